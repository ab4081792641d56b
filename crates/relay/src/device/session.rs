//! One device's connection: delivers its queue in `seq` order within a
//! bounded window of unacknowledged messages, and stores what it sends up.
//!
//! Store calls triggered by frames (acks, publishes) run concurrently with
//! delivery but complete in the order the frames came; a `ping` is answered
//! only after everything before it completed, so `pong` doubles as a
//! barrier: once it arrives, earlier acks are committed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::gateway::{CloseReason, Conn, Credentials, Event};
use relayhub_core::ids::LicenseNumber;
use relayhub_core::store::StoreResult;
use relayhub_core::time::Timestamp;
use tokio::time::Instant;
use uuid::Uuid;

use super::account::AccountDone;
use super::frames::{self, Inbound};
use super::uplink::Uplink;
use crate::Relay;
use crate::hub::{Mailbox, Take};
use crate::model::{AckOutcome, DeviceRef, NewRecord, Published, SharedMessage};

/// Frames whose store calls may be in flight at once; past it the
/// connection stops reading until some complete.
const MAX_IN_FLIGHT_OPS: usize = 256;

/// Bytes of published records whose commit is awaited, at most; past it the
/// connection stops reading (a device cannot make the server hold more).
const MAX_IN_FLIGHT_BYTES: usize = 4 * 1024 * 1024;

/// After a failed queue read, when to try again.
const READ_RETRY: Duration = Duration::from_secs(1);

async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
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
}

/// Runs a device's connection until it closes.
pub async fn run(relay: Relay, conn: Conn, handshake: Handshake) {
    let Handshake { device, pending, license, api_key, settings_version } = handshake;
    let conn_id = conn.id();
    conn.depend_on(Credentials { license: Some(device.license), api_key: Some(api_key), ..Credentials::default() });
    let mailbox = relay.hub.register(&device, conn.close_handle());
    let mut session = Session {
        window: relay.config.window,
        relay: relay.clone(),
        device: device.clone(),
        conn,
        mailbox,
        next_seq: 0,
        in_flight: VecDeque::new(),
        ops: FuturesOrdered::new(),
        uplink: Uplink::default(),
        ops_bytes: 0,
        retry_at: None,
        settings_sent: 0,
    };
    let reason = session.start(&license, pending, settings_version).await;
    relay.hub.unregister(device.pk, conn_id);
    relay.presence.set_offline(device.pk, conn_id);
    tracing::debug!(device = %device.device_id, conn = conn_id.0, ?reason, "device disconnected");
    if let Some(reason) = reason {
        session.conn.close(reason).await;
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
    pub(super) ops: FuturesOrdered<BoxFuture<'static, Done>>,
    /// Publishes, chained so that they are stored in order.
    uplink: Uplink,
    /// Bytes of record data held by `ops`.
    ops_bytes: usize,
    /// Set after a failed queue read: read again then.
    retry_at: Option<Instant>,
    /// The newest settings version the device has (sent or written by it).
    pub(super) settings_sent: i64,
}

impl Session {
    async fn start(&mut self, license: &LicenseNumber, pending: u64, settings: Option<i64>) -> Option<CloseReason> {
        if let Err(err) = self.relay.presence.set_online(self.device.pk, self.conn.id()).await {
            tracing::warn!(device = %self.device.device_id, %err, "could not record the device online");
        }
        let hello = frames::Hello {
            kind: "hello",
            device_id: self.device.device_id.as_str(),
            license: license.as_str(),
            pending,
        };
        if self.conn.send(frames::to_text(&hello)).await.is_err() || self.initial_settings(settings).await.is_err() {
            return None;
        }
        self.serve().await.unwrap_or(None)
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
                            ErrorCode::PayloadTooLarge,
                            format!("a frame of {len} bytes exceeds the limit of {limit}"),
                        );
                        self.send(frames::error(&err, None, &[])).await?;
                    }
                    Event::Binary(_) => {
                        let err = ApiError::new(ErrorCode::UnsupportedFrame, "send JSON text frames, not binary");
                        self.send(frames::error(&err, None, &[])).await?;
                    }
                    Event::Close(reason) => return Ok(Some(reason)),
                    Event::Gone => return Ok(None),
                },
                () = self.mailbox.changed(), if has_room => {}
                () = self.mailbox.signalled() => {
                    if let Some(reason) = self.on_signals().await? {
                        return Ok(Some(reason));
                    }
                }
                () = sleep_until_or_never(self.retry_at), if self.retry_at.is_some() => self.retry_at = None,
                Some(done) = self.ops.next() => self.on_done(done).await?,
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
                            self.retry_at = Some(Instant::now() + READ_RETRY);
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

    async fn on_done(&mut self, done: Done) -> Result<(), Gone> {
        match done {
            Done::Pong => self.send(frames::PONG.to_owned()).await,
            Done::Acked(_, Ok(outcome)) => {
                self.relay.metrics.messages_delivered.inc_by(outcome.delivered);
                if outcome.unknown.is_empty() {
                    return Ok(());
                }
                let err = ApiError::new(ErrorCode::UnknownMessage, "no pending message of this device has these ids");
                self.send(frames::error(&err, None, &outcome.unknown)).await
            }
            Done::Acked(ids, Err(err)) => {
                // The messages stay pending and are sent again after a
                // reconnect; the device may also simply ack again.
                self.send(frames::error(&ApiError::from(err), None, &ids)).await
            }
            Done::Published { reference, bytes, result: Ok(published) } => {
                self.ops_bytes -= bytes;
                if !published.duplicate {
                    self.relay.metrics.records_in.inc();
                }
                self.send(frames::published(&reference, published.id, published.duplicate)).await
            }
            Done::Account(done) => self.on_account_done(done).await,
            Done::Published { reference, bytes, result: Err(err) } => {
                self.ops_bytes -= bytes;
                self.send(frames::error(&ApiError::from(err), Some(&reference), &[])).await
            }
        }
    }

    pub(super) fn conn_id(&self) -> relayhub_core::gateway::ConnId {
        self.conn.id()
    }

    pub(super) async fn send(&mut self, text: String) -> Result<(), Gone> {
        self.conn.send(text).await.map_err(|_| Gone)
    }
}
