//! Group commit: jobs submitted while a batch is being committed wait and
//! go together into the next one — one transaction, one WAL flush, a few
//! round trips — however many producers there are.

use std::future::Future;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A queue of jobs run in batches by one task.
pub(crate) struct Batcher<J> {
    /// `None` once closed.
    tx: std::sync::Mutex<Option<mpsc::Sender<J>>>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl<J: Send + 'static> Batcher<J> {
    /// Starts the task; `run` gets each batch (at most `max` jobs, in
    /// submission order) and answers every job in it.
    pub(crate) fn start<F, Fut>(max: usize, mut run: F) -> Self
    where
        F: FnMut(Vec<J>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<J>(max * 4);
        let task = tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(max);
            while let Some(first) = rx.recv().await {
                jobs.push(first);
                while jobs.len() < max {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                run(std::mem::take(&mut jobs)).await;
            }
        });
        Self { tx: std::sync::Mutex::new(Some(tx)), task: tokio::sync::Mutex::new(Some(task)) }
    }

    fn sender(&self) -> Option<mpsc::Sender<J>> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Queues a job; `false` once the batcher is closed.
    pub(crate) async fn submit(&self, job: J) -> bool {
        match self.sender() {
            Some(tx) => tx.send(job).await.is_ok(),
            None => false,
        }
    }

    /// Queues a job without waiting for room; when full, waits in a task of
    /// its own (bookkeeping that must not be dropped nor block the caller).
    pub(crate) fn submit_detached(&self, job: J) {
        let Some(tx) = self.sender() else { return };
        if let Err(mpsc::error::TrySendError::Full(job)) = tx.try_send(job) {
            tokio::spawn(async move { tx.send(job).await });
        }
    }

    /// Stops taking jobs, runs those queued, and returns when they are done.
    pub(crate) async fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}
