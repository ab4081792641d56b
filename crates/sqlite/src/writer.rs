//! The single writer: one thread, one connection, group commit.
//!
//! SQLite takes one writer at a time, so all writes go through this thread.
//! It takes whatever jobs are waiting (up to a bound), runs them in one
//! transaction, commits once — one fsync for the whole batch — and only
//! then are the batch's events published and each caller answered. Those
//! two happen on a second thread, in commit order, while the writer already
//! runs the next batch: the writer is the store's ceiling, and waking
//! thousands of waiting tasks is work any other thread can do.
//!
//! Jobs run without savepoints (a savepoint copies every page a job touches
//! into a sub-journal: measured, it cost more than the job). The rule that
//! replaces them: a job refuses (`StoreError::Rejected`) before it writes
//! anything, and the writer checks it — a refusal that changed rows, or any
//! other error, rolls the whole batch back and every job in it fails.

use std::thread::JoinHandle;
use std::time::Instant;

use relayhub_core::bus::{Bus, Event};
use relayhub_core::metrics::CommitMetrics;
use relayhub_core::store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::error::from_sqlite;

/// Jobs taken into one transaction, at most.
const MAX_BATCH: usize = 2048;

/// Committed batches waiting to be announced; past this the writer waits
/// rather than run ahead of the callers it answers.
const SETTLED_QUEUE: usize = 4;

/// How a job went.
enum Step {
    Done,
    /// Refused by a rule of the domain, having written nothing.
    Refused,
    /// A storage error: the transaction may hold part of the job's writes.
    Failed(StoreError),
}

/// Work for the writer thread, run inside the batch transaction.
trait Job: Send {
    /// Runs the job's statements; events it pushes are published on the bus
    /// after the commit, or dropped if the job or the batch fails.
    fn run(&mut self, conn: &Connection, events: &mut Vec<Event>) -> Step;
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
    F: FnOnce(&Connection, &mut Vec<Event>) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection, events: &mut Vec<Event>) -> Step {
        let Some(work) = self.work.take() else { return Step::Done };
        let before = conn.total_changes();
        let result = work(conn, events);
        let step = match &result {
            Ok(_) => Step::Done,
            Err(StoreError::Rejected(_)) if conn.total_changes() == before => Step::Refused,
            Err(StoreError::Rejected(api)) => {
                tracing::error!(code = api.code.as_str(), "a job refused after writing: the batch is rolled back");
                Step::Failed(StoreError::Internal("a refused write left changes behind".into()))
            }
            Err(err) => {
                tracing::warn!(%err, "write failed");
                Step::Failed(err.clone())
            }
        };
        self.result = Some(result);
        step
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

/// How the writer's transactions begin.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Begin {
    /// `BEGIN IMMEDIATE`: the write lock up front, for the main file.
    Immediate,
    /// For a partition file, whose connection also reads the attached main
    /// file: `IMMEDIATE` would take that file's write lock too, and a plain
    /// `BEGIN` would take this file's only at the first write, failing at
    /// once (`SQLITE_BUSY_SNAPSHOT`, no waiting) if another process wrote
    /// since the transaction's first read. A write that changes nothing
    /// takes this file's lock up front, waiting like `IMMEDIATE` does.
    ThisFileOnly,
}

impl Begin {
    fn sql(self) -> &'static str {
        match self {
            Begin::Immediate => "BEGIN IMMEDIATE",
            Begin::ThisFileOnly => "BEGIN; DELETE FROM main.queues WHERE 0",
        }
    }
}

impl Writer {
    /// Starts the writer thread `name` on `conn`.
    pub(crate) fn start(conn: Connection, begin: Begin, name: String, events: Bus, stats: CommitMetrics) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(conn, begin, rx, events, stats))
            .expect("spawning the SQLite writer thread");
        Self { tx, thread: std::sync::Mutex::new(Some(thread)) }
    }

    /// Runs `work` in the next batch and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Vec<Event>) -> StoreResult<T> + Send + 'static,
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
        F: FnOnce(&Connection, &mut Vec<Event>) -> StoreResult<()> + Send + 'static,
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

fn run(mut conn: Connection, begin: Begin, mut rx: mpsc::Receiver<Command>, bus: Bus, stats: CommitMetrics) {
    let (settled_tx, settled_rx) = std::sync::mpsc::sync_channel::<Settled>(SETTLED_QUEUE);
    let answers = std::thread::Builder::new()
        .name("sqlite-answers".into())
        .spawn(move || settled_rx.into_iter().for_each(|settled| settled.announce(&bus)))
        .expect("spawning the SQLite answers thread");
    let mut stop = false;
    while !stop {
        let mut jobs: Vec<Box<dyn Job>> = Vec::new();
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
        let settled = commit_batch(&mut conn, begin, jobs);
        stats.observe(size, started);
        if settled_tx.send(settled).is_err() {
            tracing::error!("the answers thread is gone; the writer stops");
            break;
        }
    }
    // Every caller is answered before `close` returns.
    drop(settled_tx);
    let _ = answers.join();
    if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(%err, "final checkpoint failed");
    }
}

/// A batch the writer is done with, committed or rolled back as a whole.
struct Settled {
    outcome: StoreResult<()>,
    events: Vec<Event>,
    jobs: Vec<Box<dyn Job>>,
}

impl Settled {
    /// Publishes the batch's events, then answers its callers: a caller
    /// that got its answer finds every subscriber already told.
    fn announce(self, bus: &Bus) {
        bus.publish(self.events);
        for job in self.jobs {
            job.finish(&self.outcome);
        }
    }
}

fn commit_batch(conn: &mut Connection, begin: Begin, mut jobs: Vec<Box<dyn Job>>) -> Settled {
    let mut events = Vec::new();
    let outcome = run_in_transaction(conn, begin, &mut jobs, &mut events);
    if let Err(err) = &outcome {
        tracing::warn!(%err, jobs = jobs.len(), "batch failed; every write in it is refused");
        events.clear();
    }
    Settled { outcome, events, jobs }
}

fn run_in_transaction(
    conn: &mut Connection,
    begin: Begin,
    jobs: &mut [Box<dyn Job>],
    events: &mut Vec<Event>,
) -> StoreResult<()> {
    conn.execute_batch(begin.sql()).map_err(from_sqlite)?;
    let mut job_events = Vec::new();
    for job in jobs.iter_mut() {
        match job.run(conn, &mut job_events) {
            Step::Done => events.append(&mut job_events),
            Step::Refused => job_events.clear(),
            Step::Failed(err) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(err);
            }
        }
    }
    if let Err(err) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(from_sqlite(err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use relayhub_core::bus::{Delivery, Topic};

    use super::*;

    /// A row a job wrote, announced after the commit.
    struct Wrote(i64);

    impl Topic for Wrote {
        const NAME: &'static str = "test";
        fn encode(&self) -> Option<String> {
            None
        }
        fn decode(_: &str) -> Option<Self> {
            None
        }
    }

    type Reply = oneshot::Receiver<StoreResult<()>>;

    /// A job that inserts `n`, reports it, and then refuses if `refuse`.
    fn job(n: i64, write: bool, refuse: bool) -> (Box<dyn Job>, Reply) {
        let (reply, answer) = oneshot::channel();
        let work = move |conn: &Connection, events: &mut Vec<Event>| {
            if write {
                conn.execute("INSERT INTO t VALUES (?1)", [n]).map_err(from_sqlite)?;
                events.push(Event::new(Wrote(n)));
            }
            if refuse {
                return Err(StoreError::rejected(relayhub_relay::codes::QUEUE_FULL, "full"));
            }
            Ok(())
        };
        (Box::new(Call { work: Some(work), result: None, reply: Some(reply) }), answer)
    }

    fn rows(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT n FROM t ORDER BY n").unwrap();
        stmt.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
    }

    fn run_batch(conn: &mut Connection, jobs: Vec<(Box<dyn Job>, Reply)>) -> (Vec<StoreResult<()>>, Vec<i64>) {
        let (jobs, answers): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        let bus = Bus::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        bus.subscribe::<Wrote>(move |d| {
            if let Delivery::Event(Wrote(n)) = d {
                log.lock().unwrap().push(*n);
            }
        });
        commit_batch(conn, Begin::Immediate, jobs).announce(&bus);
        let results = answers.into_iter().map(|mut a| a.try_recv().expect("every job is answered")).collect();
        let seen = seen.lock().unwrap().clone();
        (results, seen)
    }

    #[test]
    fn a_clean_refusal_fails_alone_and_a_refusal_after_writing_fails_the_batch() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)").unwrap();

        // Refused before writing: the others commit, with their events.
        let (results, events) =
            run_batch(&mut conn, vec![job(1, true, false), job(2, false, true), job(3, true, false)]);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert!(matches!(&results[1], Err(StoreError::Rejected(api)) if api.code == relayhub_relay::codes::QUEUE_FULL));
        assert_eq!(events, [1, 3]);
        assert_eq!(rows(&conn), [1, 3]);

        // Refused after writing: nothing of the batch stands, and no job is
        // told it succeeded.
        let (results, events) = run_batch(&mut conn, vec![job(4, true, false), job(5, true, true)]);
        assert!(results.iter().all(Result::is_err), "{results:?}");
        assert!(events.is_empty());
        assert_eq!(rows(&conn), [1, 3]);

        // The writer goes on.
        let (results, _) = run_batch(&mut conn, vec![job(6, true, false)]);
        assert!(results[0].is_ok());
        assert_eq!(rows(&conn), [1, 3, 6]);
    }
}
