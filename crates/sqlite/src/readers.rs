//! A few reader threads, each with its own connection and statement cache,
//! taking read jobs from one queue. WAL lets them read while the writer
//! commits.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use relayhub_core::store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::conn::open_reader;

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

pub(crate) struct Readers {
    tx: Mutex<Option<mpsc::Sender<ReadJob>>>,
}

impl Readers {
    /// Readers of the main file.
    pub(crate) fn start(path: &Path, threads: usize) -> StoreResult<Self> {
        Self::start_with(threads, "", || open_reader(path))
    }

    /// `threads` readers named `sqlite-reader{name}-{i}`, each on a
    /// connection `open` makes.
    pub(crate) fn start_with(
        threads: usize,
        name: &str,
        open: impl Fn() -> StoreResult<Connection>,
    ) -> StoreResult<Self> {
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
        Ok(Self { tx: Mutex::new(Some(tx)) })
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
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
