//! The single writer: one thread, one connection, group commit.
//!
//! SQLite takes one writer at a time, so all writes go through this thread.
//! It takes whatever jobs are waiting (up to a bound), runs each in its own
//! savepoint inside one transaction, commits once — one fsync for the whole
//! batch — and only then answers each caller and reports the batch's
//! events. A job that fails rolls back to its savepoint alone.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use relayhub_core::metrics::CommitMetrics;
use relayhub_core::store::{StoreError, StoreResult};
use relayhub_relay::store::{RelayEvent, RelayEvents};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::error::from_sqlite;

/// Jobs taken into one transaction, at most.
const MAX_BATCH: usize = 2048;

/// Work for the writer thread, run inside the batch transaction.
trait Job: Send {
    /// Runs the job's statements; events it pushes are reported after the
    /// commit, or dropped if the job or the batch fails.
    fn run(&mut self, conn: &Connection, events: &mut Vec<RelayEvent>) -> bool;
    /// Answers the caller: with the job's own result if the batch committed,
    /// else with the batch's error.
    fn finish(self: Box<Self>, batch: &StoreResult<()>);
}

struct Call<T, F> {
    work: Option<F>,
    result: Option<StoreResult<T>>,
    reply: Option<oneshot::Sender<StoreResult<T>>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnOnce(&Connection, &mut Vec<RelayEvent>) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection, events: &mut Vec<RelayEvent>) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = work(conn, events);
        let ok = result.is_ok();
        if let Err(err) = &result
            && !matches!(err, StoreError::Rejected(_))
        {
            tracing::warn!(%err, "write failed");
        }
        self.result = Some(result);
        ok
    }

    fn finish(mut self: Box<Self>, batch: &StoreResult<()>) {
        let result = match (self.result.take(), batch) {
            (Some(Err(own)), _) => Err(own),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(err)) => Err(err.clone()),
            (None, Ok(())) => Err(StoreError::Internal("job was not run".into())),
        };
        if let Some(reply) = self.reply.take() {
            // The caller may have gone (a client disconnected); the write
            // stands regardless.
            let _ = reply.send(result);
        }
    }
}

enum Command {
    Job(Box<dyn Job>),
    Stop,
}

/// Handle to the writer thread.
pub(crate) struct Writer {
    tx: mpsc::Sender<Command>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub(crate) fn start(conn: Connection, events: Arc<dyn RelayEvents>, stats: CommitMetrics) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx, events, stats))
            .expect("spawning the SQLite writer thread");
        Self { tx, thread: std::sync::Mutex::new(Some(thread)) }
    }

    /// Runs `work` in the next batch and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Vec<RelayEvent>) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Call { work: Some(work), result: None, reply: Some(reply) };
        self.tx.send(Command::Job(Box::new(job))).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `work` in a coming batch without waiting for it: bookkeeping
    /// whose loss in a crash is harmless (sent marks, presence). When the
    /// queue is full it waits in a task of its own rather than be dropped.
    pub(crate) fn submit<F>(&self, work: F)
    where
        F: FnOnce(&Connection, &mut Vec<RelayEvent>) -> StoreResult<()> + Send + 'static,
    {
        let job = Command::Job(Box::new(Call::<(), F> { work: Some(work), result: None, reply: None }));
        match self.tx.try_send(job) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move { tx.send(job).await });
            }
        }
    }

    /// Commits everything queued before this call and stops the thread.
    pub(crate) async fn close(&self) {
        let _ = self.tx.send(Command::Stop).await;
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Command>, events: Arc<dyn RelayEvents>, stats: CommitMetrics) {
    let mut jobs: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut stop = false;
    while !stop {
        match rx.blocking_recv() {
            Some(Command::Job(job)) => jobs.push(job),
            Some(Command::Stop) | None => break,
        }
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Command::Job(job)) => jobs.push(job),
                Ok(Command::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let size = jobs.len();
        commit_batch(&mut conn, &mut jobs, events.as_ref());
        stats.observe(size, started);
    }
    if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(%err, "final checkpoint failed");
    }
}

fn commit_batch(conn: &mut Connection, jobs: &mut Vec<Box<dyn Job>>, sink: &dyn RelayEvents) {
    let mut events = Vec::new();
    let outcome = run_in_transaction(conn, jobs, &mut events);
    if let Err(err) = &outcome {
        tracing::warn!(%err, jobs = jobs.len(), "batch failed; every write in it is refused");
        events.clear();
    }
    for job in jobs.drain(..) {
        job.finish(&outcome);
    }
    for event in events {
        sink.emit(event);
    }
}

fn run_in_transaction(
    conn: &mut Connection,
    jobs: &mut [Box<dyn Job>],
    events: &mut Vec<RelayEvent>,
) -> StoreResult<()> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(from_sqlite)?;
    let mut job_events = Vec::new();
    for job in jobs.iter_mut() {
        let step = (|| {
            conn.prepare_cached("SAVEPOINT job")?.execute([])?;
            if job.run(conn, &mut job_events) {
                conn.prepare_cached("RELEASE job")?.execute([])?;
                events.append(&mut job_events);
            } else {
                job_events.clear();
                conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
                conn.prepare_cached("RELEASE job")?.execute([])?;
            }
            Ok::<_, rusqlite::Error>(())
        })();
        if let Err(err) = step {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(from_sqlite(err));
        }
    }
    if let Err(err) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(from_sqlite(err));
    }
    Ok(())
}
