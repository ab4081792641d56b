//! One device's connection: delivers its queue in `seq` order within a
//! bounded window of unacknowledged messages, and stores what it sends up.
//!
//! Store calls triggered by frames (acks, publishes) run concurrently with
//! delivery but complete in the order the frames came; a `ping` is answered
//! only after everything before it completed, so `pong` doubles as a
//! barrier: once it arrives, earlier acks are committed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::gateway::{CloseReason, Conn, Credentials, Event};
use relayhub_core::ids::LicenseNumber;
use relayhub_core::store::StoreResult;
use relayhub_core::time::Timestamp;
use tokio::time::Sleep;
use uuid::Uuid;

use super::account::AccountDone;
use super::frames::{self, Inbound};
use super::uplink::Uplink;
use crate::Relay;
use crate::codes;
use crate::hub::{Mailbox, News, Take};
use crate::model::{AckOutcome, DeviceRef, NewRecord, Published, SharedMessage};

/// Frames whose store calls may be in flight at once; past it the
/// connection stops reading until some complete.
const MAX_IN_FLIGHT_OPS: usize = 256;

/// Bytes of published records whose commit is awaited, at most; past it the
/// connection stops reading (a device cannot make the server hold more).
const MAX_IN_FLIGHT_BYTES: usize = 4 * 1024 * 1024;

/// After a failed queue read, when to try again.
const READ_RETRY: Duration = Duration::from_secs(1);

/// Waits out a boxed timer, or forever without one. Boxed: an idle
/// session's wait then holds a pointer, not a timer.
async fn sleep_or_never(sleep: &mut Option<Pin<Box<Sleep>>>) {
    match sleep {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// What the upgrade request established.
pub struct Handshake {
    pub device: DeviceRef,
    /// Messages waiting for it.
    pub pending: u64,
    pub license: LicenseNumber,
    /// The id of the API key the device presented.
    pub api_key: String,
    /// The settings version the device says it has (`X-Settings-Version`),
    /// so that it is not sent again.
    pub settings_version: Option<i64>,
    /// The secret the device got just now: sent once, in `hello`.
    pub device_secret: Option<relayhub_core::secret::Secret>,
}

/// Runs a device's connection until it closes.
///
/// Registration happens here, before the returned future: the future keeps
/// only the session (one copy of each part, the relay as one pointer), which
/// is most of what an idle socket costs.
pub fn run(relay: Relay, conn: Conn, handshake: Handshake) -> impl Future<Output = ()> + Send + 'static {
    let Handshake { device, pending, license, api_key, settings_version, device_secret } = handshake;
    conn.depend_on(Credentials { license: Some(device.license), api_key: Some(api_key), ..Credentials::default() });
    let mailbox = relay.hub.register(&device, conn.close_handle());
    let mut session = Session {
        window: relay.config.window,
        relay,
        device,
        conn,
        mailbox,
        next_seq: 0,
        in_flight: VecDeque::new(),
        ops: Ops::default(),
        uplink: Uplink::default(),
        ops_bytes: 0,
        retry: None,
        settings_sent: 0,
    };
    async move {
        // Opening and serving are awaited one after the other from here,
        // so that the long wait in `serve` is not nested in another state.
        let reason = match session.open(&license, pending, settings_version, device_secret).await {
            Ok(()) => session.serve().await.unwrap_or(None),
            Err(Gone) => None,
        };
        session.leave(reason).await;
    }
}

/// Store calls started by frames, completing in frame order. Allocated only
/// while some are in flight: an idle socket holds none.
#[derive(Default)]
pub(super) struct Ops(Option<FuturesOrdered<BoxFuture<'static, Done>>>);

impl Ops {
    pub(super) fn push_back(&mut self, op: BoxFuture<'static, Done>) {
        self.0.get_or_insert_with(FuturesOrdered::new).push_back(op);
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, FuturesOrdered::len)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest call once it completed; `None` at once when none is in
    /// flight (a `select!` branch then stays off).
    async fn next(&mut self) -> Option<Done> {
        let ops = self.0.as_mut()?;
        let done = ops.next().await;
        if ops.is_empty() {
            self.0 = None;
        }
        done
    }
}

/// A store call started by a frame, and what to answer when it completes.
pub(super) enum Done {
    Acked(Vec<Uuid>, StoreResult<AckOutcome>),
    Published { reference: String, bytes: usize, result: StoreResult<Published> },
    Pong,
    Account(AccountDone),
}

/// The socket failed or the peer left; nothing more can be sent.
pub(super) struct Gone;

pub(super) struct Session {
    pub(super) relay: Relay,
    pub(super) device: DeviceRef,
    conn: Conn,
    pub(super) mailbox: Arc<Mailbox>,
    window: usize,
    /// The next `seq` to send; everything below was sent or skipped.
    next_seq: i64,
    /// Sent and not yet acknowledged, in `seq` order.
    in_flight: VecDeque<(i64, Uuid)>,
    pub(super) ops: Ops,
    /// Publishes, chained so that they are stored in order.
    uplink: Uplink,
    /// Bytes of record data held by `ops`.
    ops_bytes: usize,
    /// Set after a failed queue read: read again then.
    retry: Option<Pin<Box<Sleep>>>,
    /// The newest settings version the device has (sent or written by it).
    pub(super) settings_sent: i64,
}

impl Session {
    /// The socket ended: forget it here, then close it if the server ended it.
    async fn leave(&mut self, reason: Option<CloseReason>) {
        let conn_id = self.conn.id();
        self.relay.hub.unregister(self.device.pk, conn_id);
        self.relay.presence.set_offline(self.device.pk, conn_id);
        tracing::debug!(device = %self.device.device_id, conn = conn_id.0, ?reason, "device disconnected");
        if let Some(reason) = reason {
            self.conn.close(reason).await;
        }
    }

    /// Marks the device online and greets it: `hello`, then its settings.
    async fn open(
        &mut self,
        license: &LicenseNumber,
        pending: u64,
        settings: Option<i64>,
        device_secret: Option<relayhub_core::secret::Secret>,
    ) -> Result<(), Gone> {
        if let Err(err) = self.relay.presence.set_online(self.device.pk, self.conn.id()).await {
            tracing::warn!(device = %self.device.device_id, %err, "could not record the device online");
        }
        let hello = frames::Hello {
            kind: "hello",
            device_id: self.device.device_id.as_str(),
            license: license.as_str(),
            pending,
            device_secret: device_secret.as_ref().map(|s| s.expose()),
        };
        self.send(frames::to_text(&hello)).await?;
        self.initial_settings(settings).await
    }

    /// Delivers and reacts until the connection ends: `Ok(Some)` when the
    /// server closes it, `Ok(None)`/`Err` when the peer left.
    async fn serve(&mut self) -> Result<Option<CloseReason>, Gone> {
        loop {
            self.fill_window().await?;
            let can_read = self.ops.len() < MAX_IN_FLIGHT_OPS && self.ops_bytes < MAX_IN_FLIGHT_BYTES;
            let has_room = self.in_flight.len() < self.window;
            tokio::select! {
                event = self.conn.recv(), if can_read => match event {
                    Event::Text(text) => self.on_frame(&text).await?,
                    Event::TooLarge(len) => {
                        let limit = self.relay.gateway.config().max_frame_bytes;
                        let err = ApiError::new(
                            ErrorCode::PAYLOAD_TOO_LARGE,
                            format!("a frame of {len} bytes exceeds the limit of {limit}"),
                        );
                        self.send(frames::error(&err, None, &[])).await?;
                    }
                    Event::Close(reason) => return Ok(Some(reason)),
                    Event::Gone => return Ok(None),
                    // Binary frames, and any kind of event this protocol does not take.
                    _ => {
                        let err = ApiError::new(ErrorCode::UNSUPPORTED_FRAME, "send JSON text frames, not binary");
                        self.send(frames::error(&err, None, &[])).await?;
                    }
                },
                news = self.mailbox.news(has_room) => {
                    if news == News::Signals && let Some(reason) = self.on_signals().await? {
                        return Ok(Some(reason));
                    }
                }
                () = sleep_or_never(&mut self.retry), if self.retry.is_some() => self.retry = None,
                // Every call that completed is answered, then one flush: the
                // commit that stored a burst of publishes answers them in one
                // write, not one per record. Bounded: no frame is read
                // meanwhile, so no call is added. (Inline, not a method: a
                // nested future would grow every idle session.)
                Some(mut done) = self.ops.next() => loop {
                    self.on_done(done).await?;
                    match self.ops.next().now_or_never() {
                        Some(Some(next)) => done = next,
                        _ => break self.conn.flush().await.map_err(|_| Gone)?,
                    }
                },
            }
        }
    }

    /// Sends queued messages until the window is full or nothing is left.
    async fn fill_window(&mut self) -> Result<(), Gone> {
        let mut sent = Vec::new();
        let mut expired = Vec::new();
        let now = Timestamp::now();
        while self.in_flight.len() < self.window {
            let room = self.window - self.in_flight.len();
            let batch = match self.mailbox.take(self.next_seq, room) {
                Take::Ready(batch) => batch,
                Take::Empty => break,
                Take::Fetch(marker) => {
                    let batch = match self.relay.queue.fetch(self.device.pk, self.next_seq, room).await {
                        Ok(batch) => batch,
                        Err(err) => {
                            // Not fatal: try again shortly (or on the next
                            // wake-up, whichever comes first).
                            tracing::warn!(device = %self.device.device_id, %err, "could not read the queue");
                            self.retry = Some(Box::pin(tokio::time::sleep(READ_RETRY)));
                            break;
                        }
                    };
                    if batch.len() < room {
                        self.mailbox.caught_up(marker);
                    }
                    if batch.is_empty() {
                        break;
                    }
                    batch
                }
            };
            self.feed(batch, now, &mut sent, &mut expired).await?;
        }
        if !sent.is_empty() {
            self.conn.flush().await.map_err(|_| Gone)?;
            self.relay.metrics.messages_sent.inc_by(sent.len() as u64);
            self.relay.queue.mark_sent(self.device.pk, sent);
        }
        if !expired.is_empty() {
            self.relay.metrics.messages_expired.inc_by(expired.len() as u64);
            self.relay.queue.mark_expired(self.device.pk, expired);
        }
        Ok(())
    }

    async fn feed(
        &mut self,
        batch: Vec<SharedMessage>,
        now: Timestamp,
        sent: &mut Vec<i64>,
        expired: &mut Vec<i64>,
    ) -> Result<(), Gone> {
        for message in batch {
            self.next_seq = message.seq + 1;
            if message.is_expired(now) {
                expired.push(message.seq);
                continue;
            }
            self.conn.feed(frames::message(&message)).await.map_err(|_| Gone)?;
            self.in_flight.push_back((message.seq, message.id));
            let latency = now.millis_since(message.created_at) as f64 / 1000.0;
            self.relay.metrics.delivery_latency.observe(latency);
            sent.push(message.seq);
        }
        Ok(())
    }

    async fn on_frame(&mut self, text: &str) -> Result<(), Gone> {
        let inbound = match frames::parse(text) {
            Ok(inbound) => inbound,
            Err(err) => return self.send(frames::error(&err, None, &[])).await,
        };
        match inbound {
            Inbound::Ping if self.ops.is_empty() => {
                return self.send(frames::PONG.to_owned()).await;
            }
            Inbound::Ping => self.ops.push_back(Box::pin(async { Done::Pong })),
            Inbound::Ack(ids) => {
                self.in_flight.retain(|(_, id)| !ids.contains(id));
                let store = self.relay.queue.clone();
                let device = self.device.pk;
                self.ops.push_back(Box::pin(async move {
                    let result = store.ack(device, ids.clone()).await;
                    Done::Acked(ids, result)
                }));
            }
            Inbound::Settings { version, settings } => self.write_settings(version, settings).await?,
            Inbound::LinkAccount { id_token } => self.link_account(id_token).await?,
            Inbound::Restore { id_token } => self.restore(id_token).await?,
            Inbound::Publish { reference, data } => {
                let bytes = data.get().len();
                self.ops_bytes += bytes;
                let record = NewRecord { reference: reference.clone(), data };
                let stored = self.uplink.push(&self.relay.inbox, &self.device, record);
                self.ops.push_back(Box::pin(async move { Done::Published { reference, bytes, result: stored.await } }));
            }
        }
        Ok(())
    }

    /// Queues the answer to a completed call; the caller flushes.
    async fn on_done(&mut self, done: Done) -> Result<(), Gone> {
        match done {
            Done::Pong => self.queue_frame(frames::PONG.to_owned()).await,
            Done::Acked(_, Ok(outcome)) => {
                self.relay.metrics.messages_delivered.inc_by(outcome.delivered);
                if outcome.unknown.is_empty() {
                    return Ok(());
                }
                let err = ApiError::new(codes::UNKNOWN_MESSAGE, "no pending message of this device has these ids");
                self.queue_frame(frames::error(&err, None, &outcome.unknown)).await
            }
            Done::Acked(ids, Err(err)) => {
                // The messages stay pending and are sent again after a
                // reconnect; the device may also simply ack again.
                self.queue_frame(frames::error(&ApiError::from(err), None, &ids)).await
            }
            Done::Published { reference, bytes, result: Ok(published) } => {
                self.ops_bytes -= bytes;
                if !published.duplicate {
                    self.relay.metrics.records_in.inc();
                }
                self.queue_frame(frames::published(&reference, published.id, published.duplicate)).await
            }
            // Boxed: rare, and its state would otherwise size every
            // session's future.
            Done::Account(done) => Box::pin(self.on_account_done(done)).await,
            Done::Published { reference, bytes, result: Err(err) } => {
                self.ops_bytes -= bytes;
                self.queue_frame(frames::error(&ApiError::from(err), Some(&reference), &[])).await
            }
        }
    }

    pub(super) fn conn_id(&self) -> relayhub_core::gateway::ConnId {
        self.conn.id()
    }

    pub(super) async fn send(&mut self, text: String) -> Result<(), Gone> {
        self.conn.send(text).await.map_err(|_| Gone)
    }

    /// Queues a frame without flushing it.
    async fn queue_frame(&mut self, text: String) -> Result<(), Gone> {
        self.conn.feed(text).await.map_err(|_| Gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, C, F: Future>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle device socket holds this future (1,000,000 sockets must fit
    /// in 4 GiB): a copy of the socket or the relay crept back in if it grows.
    #[test]
    fn an_idle_session_stays_small() {
        let size = future_size(run);
        assert!(size <= 1536, "the session future grew to {size} bytes");
    }
}
