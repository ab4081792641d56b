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
}
