//! Background work with one owner: every long-running task and timer of a
//! node is spawned here, told to stop on shutdown, and waited for, so no
//! task outlives the server or writes to a closed store.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The node's background tasks. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` until it ends or the node stops; it gets the stop token
    /// and should return soon after it is cancelled.
    pub fn spawn<F, Fut>(&self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.stop.is_cancelled() {
            return;
        }
        self.tracker.spawn(task(self.stop.clone()));
    }

    /// Runs `action` after `delay`, unless the node stops first.
    pub fn after<F>(&self, delay: Duration, action: F)
    where
        F: FnOnce() + Send + 'static,
    {
        self.spawn(move |stop| async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => action(),
                () = stop.cancelled() => {}
            }
        });
    }

    /// Runs `work` every `period`, the first time at once, until the node
    /// stops; what a run answers is dropped, a failure is logged as
    /// "`what` failed; will retry" and the next period tries again. A run longer than the period delays the
    /// next one (no burst to catch up); a stop waits for the run under way.
    pub fn every<F, Fut, T, E>(&self, what: &'static str, period: Duration, mut work: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.spawn(move |stop| async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
                if let Err(err) = work().await {
                    tracing::warn!(%err, "{what} failed; will retry");
                }
            }
        });
    }

    /// Cancelled when the node stops its tasks.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Tells every task to stop and waits for all of them.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn stop_cancels_timers_and_waits_for_tasks() {
        let tasks = Tasks::new();
        let fired = Arc::new(AtomicUsize::new(0));
        let f = fired.clone();
        tasks.after(Duration::from_secs(3600), move || {
            f.fetch_add(1, Ordering::SeqCst);
        });
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        tasks.spawn(move |stop| async move {
            stop.cancelled().await;
            d.fetch_add(1, Ordering::SeqCst);
        });
        tokio::time::timeout(Duration::from_secs(5), tasks.stop()).await.expect("stops at once");
        assert_eq!((fired.load(Ordering::SeqCst), done.load(Ordering::SeqCst)), (0, 1));
        // Nothing new starts after the stop.
        tasks.spawn(|_| async { panic!("must not run") });
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_work_runs_at_once_then_every_period_through_failures_until_the_stop() {
        let tasks = Tasks::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        tasks.every("the test's work", Duration::from_secs(10), move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move { if n.is_multiple_of(2) { Err("every other run fails") } else { Ok(()) } }
        });
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 4, "at 0, 10, 20 and 30 s, failures or not");
        tasks.stop().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 4, "nothing runs after the stop");
    }
}
