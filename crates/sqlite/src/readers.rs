//! A few reader threads, each with its own connection and statement cache,
//! taking read jobs from one queue. WAL lets them read while the writer
//! commits.
//!
//! Beside them, a few connections a caller may read on in its own thread
//! ([`Readers::read_inline`]) for the short lookups every request makes:
//! the hop to a reader thread and back (two wake-ups, and on a busy machine
//! a wait for the scheduler) costs more than such a lookup.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use relayhub_core::store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::conn::open_reader;
use crate::error::SqlResult;

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Connections for [`Readers::read_inline`] on the main file.
const INLINE_CONNECTIONS: usize = 2;

pub(crate) struct Readers {
    tx: Mutex<Option<mpsc::Sender<ReadJob>>>,
    /// Never waited for: a caller that finds them all taken, or whose read
    /// would wait for a lock, goes to the reader threads instead.
    inline: Vec<Mutex<Connection>>,
    closed: AtomicBool,
}

impl Readers {
    /// Readers of the main file, which holds the credentials: with the
    /// connections for [`Self::read_inline`].
    pub(crate) fn start(path: &Path, threads: usize) -> StoreResult<Self> {
        Self::start_with(threads, INLINE_CONNECTIONS, "", || open_reader(path))
    }

    /// `threads` readers named `sqlite-reader{name}-{i}`, each on a
    /// connection `open` makes, and `inline` connections for
    /// [`Self::read_inline`] (none: it always uses the threads).
    pub(crate) fn start_with(
        threads: usize,
        inline: usize,
        name: &str,
        open: impl Fn() -> StoreResult<Connection>,
    ) -> StoreResult<Self> {
        let inline = (0..inline)
            .map(|_| {
                let conn = open()?;
                // A lock held elsewhere (a checkpoint that truncates the
                // log, another process) answers `SQLITE_BUSY` at once
                // instead of blocking an async worker.
                conn.busy_timeout(std::time::Duration::ZERO).sql()?;
                Ok(Mutex::new(conn))
            })
            .collect::<StoreResult<_>>()?;
        let (tx, rx) = mpsc::channel::<ReadJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let conn = open()?;
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("sqlite-reader{name}-{i}"))
                .spawn(move || {
                    loop {
                        // Hold the lock only to take a job, not to run it.
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(&conn),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| StoreError::Internal(format!("spawning a reader thread: {e}")))?;
        }
        Ok(Self { tx: Mutex::new(Some(tx)), inline, closed: AtomicBool::new(false) })
    }

    /// Runs `work` on this thread if a connection is free and nothing makes
    /// it wait, else on a reader thread. For lookups of a few rows by key
    /// in small, hot tables (credentials on every request), whose pages are
    /// in memory: anything that may scan or touch the disk goes to `read`.
    pub(crate) async fn read_inline<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let done = self.inline.iter().find_map(|conn| conn.try_lock().ok()).and_then(|conn| work(&conn).ok());
        match done {
            Some(value) => Ok(value),
            // Busy or failed: the reader threads wait as long as any read
            // does, and report an error that is real.
            None => self.read(work).await,
        }
    }

    /// Runs `work` on a reader connection.
    pub(crate) async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(work(conn));
        });
        {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            let tx = tx.as_ref().ok_or(StoreError::Closed)?;
            tx.send(job).map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Lets the threads finish their jobs and exit.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row, and the thread that read it.
    fn answer(conn: &Connection) -> StoreResult<(i64, String)> {
        let n = conn.query_row("SELECT n FROM t", [], |row| row.get(0)).map_err(crate::error::from_sqlite)?;
        Ok((n, std::thread::current().name().unwrap_or_default().to_owned()))
    }

    #[tokio::test]
    async fn an_inline_read_goes_to_the_threads_when_no_connection_is_free_and_fails_once_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let setup = Connection::open(&path).unwrap();
        setup.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (7)").unwrap();
        let readers = Readers::start_with(1, INLINE_CONNECTIONS, "-test", || {
            Connection::open(&path).map_err(crate::error::from_sqlite)
        })
        .unwrap();

        let caller = std::thread::current().name().unwrap_or_default().to_owned();
        assert_eq!(readers.read_inline(answer).await.unwrap(), (7, caller.clone()));
        // Every inline connection taken (other requests reading): the
        // lookup still answers, from a reader thread.
        let taken: Vec<_> = readers.inline.iter().map(|c| c.lock().unwrap()).collect();
        assert_eq!(readers.read_inline(answer).await.unwrap(), (7, "sqlite-reader-test-0".to_owned()));
        drop(taken);

        readers.close();
        assert!(matches!(readers.read_inline(answer).await, Err(StoreError::Closed)));
    }
}
