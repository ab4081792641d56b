//! A request body with a clock: a client that announces a body and sends
//! it slowly, or never, must not keep its connection (and its place among
//! the pending ones) for as long as it likes.
//!
//! - While the connection has shown no valid credential, the whole
//!   request must have arrived by its deadline (`http.request_timeout`).
//! - Any body, credential or not, must keep up `http.min_body_rate` bytes
//!   a second on average once `http.body_rate_grace` has passed, so that a
//!   long upload on a bad network goes on while a trickle does not.
//!
//! Past either, the body ends with [`BodyTooSlow`]: the extractors answer
//! 408 `request_timeout`, and hyper closes the connection (its body was
//! not read to the end).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};
use relayhub_core::admission::{BodyTooSlow, Ticket};
use tokio::time::{Instant, Sleep};

/// The clocks a body is held to.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// When the request began (its connection's accept, for the first).
    pub started: Instant,
    /// `http.request_timeout`, while the connection is pending.
    pub deadline: Duration,
    /// `http.min_body_rate` in bytes a second (0: none).
    pub min_rate: u64,
    /// `http.body_rate_grace`.
    pub grace: Duration,
}

impl Pace {
    /// The first moment the body, having `received` bytes so far, is too
    /// slow if nothing more arrives (and by which rule).
    fn next_check(&self, received: u64, pending: bool) -> Option<(Instant, BodyTooSlow)> {
        let by_rate = (self.min_rate > 0).then(|| {
            let earned = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
            (self.started + self.grace.max(earned), BodyTooSlow::Rate)
        });
        let by_deadline = pending.then(|| (self.started + self.deadline, BodyTooSlow::Deadline));
        match (by_rate, by_deadline) {
            (Some(a), Some(b)) => Some(if b.0 <= a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// [`Incoming`] held to a [`Pace`].
pub struct PacedBody {
    inner: Incoming,
    pace: Pace,
    ticket: Option<Arc<Ticket>>,
    received: u64,
    /// Fires at the next moment the body could be too slow; `None` when no
    /// rule applies. Set again after each arrival (`stale`).
    timer: Option<Pin<Box<Sleep>>>,
    stale: bool,
}

impl PacedBody {
    pub fn new(inner: Incoming, pace: Pace, ticket: Option<Arc<Ticket>>) -> Self {
        Self { inner, pace, ticket, received: 0, timer: None, stale: true }
    }

    fn pending(&self) -> bool {
        self.ticket.as_ref().is_some_and(|t| t.is_pending())
    }

    /// The rule broken now, or arms the timer for the next moment one
    /// could be (the credential may have come since the last check: the
    /// handler authenticates before it reads the body).
    fn check(&mut self) -> Option<BodyTooSlow> {
        self.stale = false;
        let Some((at, why)) = self.pace.next_check(self.received, self.pending()) else {
            self.timer = None;
            return None;
        };
        if at <= Instant::now() {
            return Some(why);
        }
        match &mut self.timer {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        None
    }
}

impl Body for PacedBody {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                this.received += data.map_or(0, |d| d.len() as u64);
                this.stale = true;
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.stale
            && let Some(why) = this.check()
        {
            return Poll::Ready(Some(Err(Box::new(why))));
        }
        while let Some(sleep) = this.timer.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            if let Some(why) = this.check() {
                tracing::debug!(reason = %why, received = this.received, "closing a slow request");
                return Poll::Ready(Some(Err(Box::new(why))));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace() -> Pace {
        Pace {
            started: Instant::now(),
            deadline: Duration::from_secs(10),
            min_rate: 1000,
            grace: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_pending_request_meets_its_deadline_first() {
        let p = pace();
        let (at, why) = p.next_check(100_000, true).unwrap();
        assert_eq!((at - p.started, why), (Duration::from_secs(10), BodyTooSlow::Deadline));
        let (at, why) = p.next_check(0, true).unwrap();
        assert_eq!((at - p.started, why), (Duration::from_secs(5), BodyTooSlow::Rate), "nothing sent: the grace");
    }

    #[test]
    fn an_authenticated_body_earns_time_by_the_bytes_it_sent() {
        let p = pace();
        let (at, why) = p.next_check(60_000, false).unwrap();
        assert_eq!((at - p.started, why), (Duration::from_secs(60), BodyTooSlow::Rate));
        assert!(Pace { min_rate: 0, ..p }.next_check(0, false).is_none(), "no rate, no credential rule");
    }
}
