//! The node's live view of the relay: which devices are connected here,
//! each with a mailbox of committed messages, and who waits on which
//! license's inbox. Fed by the bus ([`RelayEvent`]s and the core's
//! [`DeviceEvent`]s) right after each commit, so delivery needs no polling.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use relayhub_core::bus::{Bus, Delivery};
use relayhub_core::devices::DeviceEvent;
use relayhub_core::gateway::{CloseHandle, CloseReason, ConnId};
use relayhub_core::ids::{DevicePk, LicensePk};
use tokio::sync::watch;

use crate::model::{DeviceRef, SharedMessage};
use crate::settings::Settings;
use crate::store::RelayEvent;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Messages committed for one connected device, waiting for its socket.
///
/// Bounded: past its capacity, or when the store reports new messages
/// without carrying them, the mailbox only remembers that it is *stale* and
/// the connection reads from the store instead. A slow device therefore
/// costs at most `capacity` messages of memory.
pub struct Mailbox {
    state: Mutex<MailboxState>,
    /// Settings and presence news, until the connection takes them.
    signals: Mutex<Signals>,
    /// What was pushed since the connection last looked: [`MESSAGES`],
    /// [`SIGNALS`].
    news: AtomicU8,
    /// The connection's task, the only one that waits on its mailbox. Not
    /// a `Notify` per kind of news: each pass of the connection's loop
    /// registered with both under their locks and dropped the registrations
    /// again, on every wake-up of every socket.
    waker: AtomicWaker,
}

/// [`Mailbox::news`] bits: messages were pushed.
const MESSAGES: u8 = 1;
/// [`Mailbox::news`] bits: settings or presence news.
const SIGNALS: u8 = 2;

/// What [`Mailbox::news`] woke the connection for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    /// Messages were pushed: fill the window.
    Messages,
    /// Settings or presence news: [`Mailbox::take_signals`].
    Signals,
}

/// News for a connection other than messages.
#[derive(Debug, Default)]
pub struct Signals {
    /// The newest settings pushed for the device.
    pub settings: Option<SettingsNews>,
    /// The device connected elsewhere: check whether this is still its
    /// current connection.
    pub recheck_presence: bool,
}

/// Settings as pushed: with the document, or only the fact of a change.
#[derive(Debug, Clone)]
pub enum SettingsNews {
    Known(Arc<Settings>),
    Changed,
}

struct MailboxState {
    queue: VecDeque<SharedMessage>,
    capacity: usize,
    /// Non-zero while the store may hold messages that are not in `queue`;
    /// a generation number, so a read that started before a later overflow
    /// does not clear it.
    stale: u64,
    generation: u64,
}

/// What a connection should do next, from [`Mailbox::take`].
#[derive(Debug)]
pub enum Take {
    /// These messages, contiguous from the requested `seq`.
    Ready(Vec<SharedMessage>),
    /// Read from the store from the requested `seq`; then report
    /// [`Mailbox::caught_up`] with this marker if the read was complete.
    Fetch(u64),
    /// Nothing to send.
    Empty,
}

impl Mailbox {
    /// A new mailbox starts stale: a connection begins by reading its
    /// backlog from the store.
    fn new(capacity: usize) -> Self {
        let state = MailboxState { queue: VecDeque::new(), capacity, stale: 1, generation: 1 };
        Self { state: Mutex::new(state), signals: Mutex::default(), news: AtomicU8::new(0), waker: AtomicWaker::new() }
    }

    /// Tells the connection, after the news is in place.
    fn announce(&self, bit: u8) {
        self.news.fetch_or(bit, Ordering::Release);
        self.waker.wake();
    }

    /// Takes one kind of news among `mask` that was announced, signals
    /// first (messages stay announced for the next look).
    fn take_news(&self, mask: u8) -> Option<News> {
        // A plain read first: most looks find nothing, and need no write.
        if self.news.load(Ordering::Acquire) & mask == 0 {
            return None;
        }
        [(SIGNALS, News::Signals), (MESSAGES, News::Messages)]
            .into_iter()
            .find(|(bit, _)| mask & bit != 0 && self.news.fetch_and(!bit, Ordering::AcqRel) & bit != 0)
            .map(|(_, news)| news)
    }

    /// Waits for news since the last wait: signals always, messages only
    /// `with_messages` (a connection whose window is full leaves them for
    /// later). Only the connection's own task may wait.
    pub fn news(&self, with_messages: bool) -> impl Future<Output = News> + '_ {
        let mask = if with_messages { SIGNALS | MESSAGES } else { SIGNALS };
        std::future::poll_fn(move |cx| {
            if let Some(news) = self.take_news(mask) {
                return Poll::Ready(news);
            }
            // Registered before the second look, so that news announced
            // in between wakes the task.
            self.waker.register(cx.waker());
            self.take_news(mask).map_or(Poll::Pending, Poll::Ready)
        })
    }

    fn push_settings(&self, news: SettingsNews) {
        {
            let mut signals = lock(&self.signals);
            let newer = match (&signals.settings, &news) {
                (Some(SettingsNews::Known(had)), SettingsNews::Known(new)) => new.version > had.version,
                // An unknown change must be read whatever was pushed before.
                _ => true,
            };
            if newer {
                signals.settings = Some(news);
            }
        }
        self.announce(SIGNALS);
    }

    fn recheck_presence(&self) {
        lock(&self.signals).recheck_presence = true;
        self.announce(SIGNALS);
    }

    /// Takes the news pushed since the last call.
    pub fn take_signals(&self) -> Signals {
        std::mem::take(&mut *lock(&self.signals))
    }

    fn push(&self, first_seq: i64, messages: Vec<SharedMessage>) {
        {
            let mut state = lock(&self.state);
            let contiguous = match state.queue.back() {
                Some(last) => last.seq + 1 == first_seq,
                None => true,
            };
            if messages.is_empty() || !contiguous || state.queue.len() + messages.len() > state.capacity {
                state.generation += 1;
                state.stale = state.generation;
            } else {
                state.queue.extend(messages);
            }
        }
        self.announce(MESSAGES);
    }

    /// Up to `room` messages from `next_seq` on.
    pub fn take(&self, next_seq: i64, room: usize) -> Take {
        let mut state = lock(&self.state);
        while state.queue.front().is_some_and(|m| m.seq < next_seq) {
            state.queue.pop_front();
        }
        match state.queue.front() {
            Some(first) if first.seq == next_seq => {
                let n = room.min(state.queue.len());
                Take::Ready(state.queue.drain(..n).collect())
            }
            Some(_) => Take::Fetch(state.stale),
            None if state.stale != 0 => Take::Fetch(state.stale),
            None => Take::Empty,
        }
    }

    /// A store read that began after [`Take::Fetch`]`(marker)` returned
    /// everything there was: the mailbox is fresh again unless it went stale
    /// once more in the meantime.
    pub fn caught_up(&self, marker: u64) {
        let mut state = lock(&self.state);
        if state.stale == marker {
            state.stale = 0;
        }
    }
}

struct Slot {
    conn: ConnId,
    close: CloseHandle,
    mailbox: Arc<Mailbox>,
}

/// The relay's state on this node.
pub struct Hub {
    devices: Mutex<HashMap<DevicePk, Slot>>,
    inboxes: Mutex<HashMap<LicensePk, watch::Sender<u64>>>,
    mailbox_capacity: usize,
}

impl Hub {
    pub fn new(mailbox_capacity: usize) -> Self {
        Self { devices: Mutex::default(), inboxes: Mutex::default(), mailbox_capacity }
    }

    /// A device's socket opened: it becomes the device's connection here,
    /// and an older one is closed (the newer connection wins).
    pub fn register(&self, device: &DeviceRef, close: CloseHandle) -> Arc<Mailbox> {
        let mailbox = Arc::new(Mailbox::new(self.mailbox_capacity));
        let slot = Slot { conn: close.id(), close, mailbox: mailbox.clone() };
        if let Some(older) = lock(&self.devices).insert(device.pk, slot) {
            older.close.close(CloseReason::REPLACED);
        }
        mailbox
    }

    /// A device's socket closed; a newer socket of the same device stays.
    pub fn unregister(&self, device: DevicePk, conn: ConnId) {
        let mut devices = lock(&self.devices);
        if devices.get(&device).is_some_and(|slot| slot.conn == conn) {
            devices.remove(&device);
        }
    }

    /// Whether the device has a socket on this node.
    pub fn is_online(&self, device: DevicePk) -> bool {
        lock(&self.devices).contains_key(&device)
    }

    /// Devices connected to this node.
    pub fn online_count(&self) -> usize {
        lock(&self.devices).len()
    }

    fn mailbox(&self, device: DevicePk) -> Option<Arc<Mailbox>> {
        lock(&self.devices).get(&device).map(|slot| slot.mailbox.clone())
    }

    /// A receiver that changes whenever the license's inbox gets records.
    pub fn inbox_watch(&self, license: LicensePk) -> watch::Receiver<u64> {
        lock(&self.inboxes).entry(license).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Forgets a deleted license's inbox watch (its waiters see it close).
    pub fn forget_license(&self, license: LicensePk) {
        lock(&self.inboxes).remove(&license);
    }
}

impl Hub {
    /// Feeds this hub from the bus.
    pub fn subscribe(self: &Arc<Self>, bus: &Bus) {
        let hub = self.clone();
        bus.subscribe::<RelayEvent>(move |delivery| match delivery {
            Delivery::Event(event) => hub.on_relay(event),
            Delivery::Resync => hub.resync(),
        });
        let hub = self.clone();
        // A resync reaches every topic; the relay's subscription handles it.
        bus.subscribe::<DeviceEvent>(move |delivery| {
            if let Delivery::Event(event) = delivery {
                hub.on_device(*event);
            }
        });
    }

    fn on_relay(&self, event: &RelayEvent) {
        match event {
            RelayEvent::Queued { device, first_seq, messages } => {
                if let Some(mailbox) = self.mailbox(*device) {
                    mailbox.push(*first_seq, messages.clone());
                }
            }
            RelayEvent::Published { license } => {
                if let Some(sender) = lock(&self.inboxes).get(license) {
                    sender.send_modify(|v| *v = v.wrapping_add(1));
                }
            }
            RelayEvent::Settings { device, settings } => {
                if let Some(mailbox) = self.mailbox(*device) {
                    mailbox.push_settings(settings.clone().map_or(SettingsNews::Changed, SettingsNews::Known));
                }
            }
        }
    }

    fn on_device(&self, event: DeviceEvent) {
        match event {
            DeviceEvent::Unbound { device } => {
                if let Some(slot) = lock(&self.devices).get(&device) {
                    slot.close.close(CloseReason::UNBOUND);
                }
            }
            DeviceEvent::ConnectedElsewhere { device } => {
                if let Some(mailbox) = self.mailbox(device) {
                    mailbox.recheck_presence();
                }
            }
        }
    }

    /// Events may have been missed: every connection re-reads its queue
    /// and settings, every long poll re-reads the inbox.
    fn resync(&self) {
        let mailboxes: Vec<_> = lock(&self.devices).values().map(|slot| slot.mailbox.clone()).collect();
        for mailbox in mailboxes {
            mailbox.push(0, Vec::new());
            mailbox.push_settings(SettingsNews::Changed);
        }
        for sender in lock(&self.inboxes).values() {
            sender.send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::QueuedMessage;
    use relayhub_core::time::Timestamp;

    fn msg(seq: i64) -> SharedMessage {
        Arc::new(QueuedMessage {
            id: uuid::Uuid::now_v7(),
            seq,
            created_at: Timestamp::now(),
            expires_at: None,
            data: serde_json::value::RawValue::from_string("1".into()).unwrap(),
        })
    }

    fn seqs(take: Take) -> Vec<i64> {
        match take {
            Take::Ready(m) => m.iter().map(|m| m.seq).collect(),
            other => panic!("expected messages, got {other:?}"),
        }
    }

    #[test]
    fn a_new_mailbox_asks_for_the_backlog_first() {
        let mb = Mailbox::new(4);
        let Take::Fetch(marker) = mb.take(1, 10) else { panic!() };
        mb.caught_up(marker);
        assert!(matches!(mb.take(1, 10), Take::Empty));
    }

    #[test]
    fn contiguous_pushes_are_taken_in_order_within_room() {
        let mb = Mailbox::new(8);
        let Take::Fetch(m) = mb.take(1, 10) else { panic!() };
        mb.caught_up(m);
        mb.push(1, vec![msg(1), msg(2)]);
        mb.push(3, vec![msg(3)]);
        assert_eq!(seqs(mb.take(1, 2)), vec![1, 2]);
        assert_eq!(seqs(mb.take(3, 2)), vec![3]);
    }

    #[test]
    fn overflow_makes_it_stale_until_a_complete_read() {
        let mb = Mailbox::new(2);
        let Take::Fetch(m) = mb.take(1, 10) else { panic!() };
        mb.caught_up(m);
        mb.push(1, vec![msg(1), msg(2)]);
        mb.push(3, vec![msg(3)]); // over capacity: dropped, remembered as stale
        assert_eq!(seqs(mb.take(1, 10)), vec![1, 2]);
        let Take::Fetch(marker) = mb.take(3, 10) else { panic!("must read from the store") };
        mb.push(4, vec![]); // went stale again while reading
        mb.caught_up(marker);
        assert!(matches!(mb.take(4, 10), Take::Fetch(_)));
    }

    /// Polls `news` once, as the connection's loop does.
    fn poll_news(mb: &Mailbox, with_messages: bool) -> Poll<News> {
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        std::pin::pin!(mb.news(with_messages)).poll(&mut cx)
    }

    #[test]
    fn news_waits_for_what_the_connection_can_take_and_keeps_the_rest() {
        let mb = Mailbox::new(8);
        assert_eq!(poll_news(&mb, true), Poll::Pending);
        mb.push(1, vec![msg(1)]);
        // A full window does not wake for messages, and does not lose them.
        assert_eq!(poll_news(&mb, false), Poll::Pending);
        mb.recheck_presence();
        assert_eq!(poll_news(&mb, true), Poll::Ready(News::Signals), "signals first");
        assert_eq!(poll_news(&mb, true), Poll::Ready(News::Messages));
        assert_eq!(poll_news(&mb, true), Poll::Pending, "each announcement is taken once");
    }

    #[test]
    fn news_after_the_wait_began_wakes_the_connection() {
        let mb = Arc::new(Mailbox::new(8));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let pusher = mb.clone();
        let news = runtime.block_on(async move {
            let wait = tokio::spawn(async move { mb.news(true).await });
            tokio::task::yield_now().await; // the wait is registered
            pusher.push(1, vec![msg(1)]);
            wait.await.unwrap()
        });
        assert_eq!(news, News::Messages);
    }

    #[test]
    fn already_sent_messages_are_dropped() {
        let mb = Mailbox::new(8);
        mb.caught_up(1);
        mb.push(5, vec![msg(5), msg(6)]);
        assert_eq!(seqs(mb.take(6, 10)), vec![6]);
    }
}
