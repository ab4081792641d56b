//! Passwords: Argon2id with a fresh salt (PHC strings), hashed and checked
//! off the async threads (a hash takes tens of milliseconds and 19 MiB by
//! design), on a few threads of their own: the allocator keeps a freed
//! 19 MiB block in the arena of the thread that used it, so Argon2 on
//! tokio's blocking pool (up to 512 threads) kept hundreds of MiB after a
//! burst; on [`running`] threads it keeps at most that many blocks.
//!
//! Every hash and check of the process passes one gate: at most
//! [`running`] run at once (about the core count), and a check waits for
//! its turn only behind a short queue ([`waiting`]) and for at most
//! [`MAX_WAIT`] — beyond that it is refused at once with 503
//! `password_checks_busy` and `Retry-After`, so that a flood of sign-ins
//! can neither pile up blocking threads nor Argon2's memory. Hashing
//! (authenticated callers: administrators, the CLI) waits for its turn
//! without the queue's bound.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::{ApiError, ErrorCode};

/// The most Argon2 operations run at once: more than this many cores'
/// worth gains no throughput, and each holds 19 MiB.
const MAX_RUNNING: usize = 4;

/// The longest a password check waits for its turn before 503.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// A job for the Argon2 threads.
type Job = Box<dyn FnOnce() + Send>;

struct Gate {
    /// Turns to run (held while Argon2 runs): one per thread of `jobs`.
    running: Semaphore,
    /// The Argon2 threads' queue (never more in it than turns).
    jobs: std::sync::mpsc::SyncSender<Job>,
    /// Places to run or wait, for checks (taken without waiting).
    admitted: Semaphore,
    size: usize,
    queue: usize,
}

fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let (size, queue) = sizes(cores);
        let (jobs, inbox) = std::sync::mpsc::sync_channel::<Job>(size);
        let inbox = std::sync::Arc::new(std::sync::Mutex::new(inbox));
        for i in 0..size {
            let inbox = inbox.clone();
            let worker = move || {
                loop {
                    // The lock is held only while waiting for the next job.
                    let next = inbox.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(job) = next else { return };
                    // A job that panics answers nothing (its caller sees an
                    // internal error); the thread goes on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            };
            if let Err(err) = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(worker) {
                tracing::error!(%err, "starting a password thread failed");
            }
        }
        Gate { running: Semaphore::new(size), jobs, admitted: Semaphore::new(size + queue), size, queue }
    })
}

/// How many Argon2 operations run at once, and how many checks may wait
/// beyond those, on a machine of `cores` cores: the cores (at most
/// [`MAX_RUNNING`]), and a queue of a few rounds' worth (at least 32, so
/// that one address's whole allowance of attempts fits).
fn sizes(cores: usize) -> (usize, usize) {
    let size = cores.clamp(1, MAX_RUNNING);
    (size, (8 * size).max(32))
}

/// Argon2 operations that may run at once in this process.
pub fn running() -> usize {
    gate().size
}

/// Password checks that may wait for their turn beyond [`running`].
pub fn waiting() -> usize {
    gate().queue
}

fn busy() -> ApiError {
    ApiError::new(ErrorCode::PASSWORD_CHECKS_BUSY, "too many password checks at once; retry shortly").retry_after(1)
}

/// Runs `job` (Argon2) on a password thread, with its turn.
async fn run<T: Send + 'static>(
    turn: SemaphorePermit<'static>,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let failed = || ApiError::new(ErrorCode::INTERNAL, "a password job failed");
    let (answer, answered) = tokio::sync::oneshot::channel();
    // The turn goes with the job, given back when Argon2 is done even if
    // the caller went away meanwhile: turns never outnumber the threads.
    let job: Job = Box::new(move || {
        let out = job();
        drop(turn);
        let _ = answer.send(out);
    });
    // A turn is a free place in the queue: this does not block.
    gate().jobs.try_send(job).map_err(|_| failed())?;
    answered.await.map_err(|_| failed())
}

/// A turn for a check: a place in the queue at once, then a turn within
/// [`MAX_WAIT`]; otherwise `password_checks_busy`.
async fn check_turn() -> Result<(SemaphorePermit<'static>, SemaphorePermit<'static>), ApiError> {
    let gate = gate();
    let place = gate.admitted.try_acquire().map_err(|_| busy())?;
    let turn = tokio::time::timeout(MAX_WAIT, gate.running.acquire()).await.map_err(|_| busy())?;
    Ok((place, turn.map_err(|_| busy())?))
}

/// Refuses passwords no one should keep.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    match password.chars().count() {
        0..8 => Err(ApiError::invalid_field("a password has at least 8 characters")),
        8..=200 => Ok(()),
        _ => Err(ApiError::invalid_field("a password has at most 200 characters")),
    }
}

/// An email address to sign in with, as accounts keep it: trimmed and
/// lowercase; 422 for what is not one.
pub fn check_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(email) } else { Err(ApiError::invalid_field(format!("{raw:?} is not an email address"))) }
}

/// Reads a password from the first line of stdin, for the command line
/// (never an argument, which `ps` and shell history would show), and
/// checks it.
pub async fn read_password() -> Result<String, ApiError> {
    let line = tokio::task::spawn_blocking(|| {
        use std::io::{BufRead, IsTerminal, Write};
        if std::io::stdin().is_terminal() {
            eprint!("Password (it will show as you type; pipe it in to hide it): ");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::INTERNAL, "reading the password failed"))?
    .map_err(|e| ApiError::invalid_field(format!("reading the password from stdin: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    check_password(&password)?;
    Ok(password)
}

/// Hashes a password.
pub async fn hash(password: String) -> Result<String, ApiError> {
    let failed = || ApiError::new(ErrorCode::INTERNAL, "password hashing failed");
    let turn = gate().running.acquire().await.map_err(|_| busy())?;
    run(turn, move || Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()))
        .await?
        .map_err(|_| failed())
}

/// Whether `password` matches `hash`; `password_checks_busy` (503) when
/// too many checks are running and waiting already.
pub async fn verify(password: String, hash: String) -> Result<bool, ApiError> {
    let (place, turn) = check_turn().await?;
    let matches = run(turn, move || {
        PasswordHash::new(&hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await;
    drop(place);
    matches
}

/// Whether `password` matches `hash`; when there is no hash (no such
/// account) it is checked against a hash no password matches, so the
/// answer takes as long and timing does not tell accounts apart.
pub async fn verify_if_known(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    static NOBODY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let known = hash.is_some();
    let hash = match hash {
        Some(hash) => hash,
        None => NOBODY
            .get_or_try_init(|| {
                self::hash(
                    crate::secret::Secret::generate(crate::secret::SecretKind::LICENSE_TOKEN).expose().to_owned(),
                )
            })
            .await?
            .clone(),
    };
    Ok(verify(password, hash).await? && known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_is_about_the_core_count_with_a_short_queue() {
        assert_eq!(sizes(1), (1, 32));
        assert_eq!(sizes(2), (2, 32));
        assert_eq!(sizes(64), (MAX_RUNNING, 32));
        assert!(running() >= 1 && running() <= MAX_RUNNING);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn passwords_verify_and_a_flood_of_checks_is_refused_quickly_beyond_the_queue() {
        let hash = hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify("correct horse".into(), hash.clone()).await.unwrap());
        assert!(!verify("wrong horse".into(), hash.clone()).await.unwrap());
        assert!(!verify("x".into(), "not a hash".into()).await.unwrap());
        assert!(!verify_if_known("x".into(), None).await.unwrap());

        let flood = running() + waiting() + 100;
        let started = std::time::Instant::now();
        let checks: Vec<_> = (0..flood).map(|_| tokio::spawn(verify("wrong horse".into(), hash.clone()))).collect();
        let mut busy = 0;
        for check in checks {
            match check.await.unwrap() {
                Ok(matches) => assert!(!matches),
                Err(err) => {
                    assert_eq!(
                        (err.code, err.status().as_u16(), err.retry_after),
                        (ErrorCode::PASSWORD_CHECKS_BUSY, 503, Some(1))
                    );
                    busy += 1;
                }
            }
        }
        assert!(busy >= 100, "{busy} of {flood} refused; at most {} may run or wait", running() + waiting());
        assert!(started.elapsed() < Duration::from_secs(60));
        assert!(verify("correct horse".into(), hash).await.unwrap(), "the gate is open again afterwards");
    }
}
