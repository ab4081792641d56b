//! The after-commit event bus every capability announces its changes on.
//!
//! A backend publishes a transaction's events once it has committed, so a
//! subscriber never acts on a write that could still roll back, and before
//! it answers the callers, so a caller that has its answer finds every
//! subscriber told. Events are
//! typed per capability ([`Topic`]); each also has a compact wire form, so
//! that with several nodes (PostgreSQL) the backend can carry it to the
//! others, tagged by its topic. A subscriber sees an event committed here
//! with all its data, and one from another node as decoded from its wire
//! form — with less data where the wire form leaves some out.
//!
//! Handlers run on the publishing thread (the SQLite writer, a PostgreSQL
//! batch task): they must not block.

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;

use crate::store::StoreResult;

/// A capability's kind of event.
pub trait Topic: Sized + Send + Sync + 'static {
    /// The tag its events carry between nodes, e.g. `relay`. No `|`.
    const NAME: &'static str;
    /// The form other nodes receive; `None` keeps the event on this node.
    fn encode(&self) -> Option<String>;
    /// An event from another node; `None` if the wire form is not understood
    /// (a newer node's event), which is then skipped.
    fn decode(wire: &str) -> Option<Self>;
}

/// What a subscriber receives.
#[derive(Debug)]
pub enum Delivery<'a, T> {
    /// A committed event, from this node or another.
    Event(&'a T),
    /// Events may have been missed (the link to the other nodes was lost
    /// and restored): re-read whatever the subscriber keeps in step.
    Resync,
}

/// One event, as backends carry it: its topic and its value, which gives
/// its wire form when another node needs it (on one node, never).
pub struct Event {
    topic: &'static str,
    value: Box<dyn Any + Send + Sync>,
    encode: fn(&(dyn Any + Send + Sync)) -> Option<String>,
}

fn encode_as<T: Topic>(value: &(dyn Any + Send + Sync)) -> Option<String> {
    value.downcast_ref::<T>().and_then(T::encode)
}

impl Event {
    pub fn new<T: Topic>(value: T) -> Self {
        Self { topic: T::NAME, value: Box::new(value), encode: encode_as::<T> }
    }

    pub fn topic(&self) -> &'static str {
        self.topic
    }

    /// The form other nodes receive, if they receive it.
    pub fn wire(&self) -> Option<String> {
        (self.encode)(self.value.as_ref())
    }

    /// The event as its topic's type.
    pub fn get<T: Topic>(&self) -> Option<&T> {
        self.value.downcast_ref()
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event").field("topic", &self.topic).field("wire", &self.wire()).finish()
    }
}

/// How a backend reaches the other nodes sharing its database.
pub trait Remote: Send + Sync + 'static {
    /// Sends the events' wire forms to every other node, in this order.
    fn send(&self, events: Vec<(&'static str, String)>) -> BoxFuture<'static, StoreResult<()>>;
}

trait Handler: Send + Sync {
    fn local(&self, event: &Event);
    fn remote(&self, wire: &str);
    fn resync(&self);
}

struct Typed<T, F> {
    handle: F,
    _topic: PhantomData<fn(T)>,
}

impl<T: Topic, F: Fn(Delivery<'_, T>) + Send + Sync> Handler for Typed<T, F> {
    fn local(&self, event: &Event) {
        if let Some(value) = event.get::<T>() {
            (self.handle)(Delivery::Event(value));
        }
    }

    fn remote(&self, wire: &str) {
        match T::decode(wire) {
            Some(value) => (self.handle)(Delivery::Event(&value)),
            None => tracing::warn!(topic = T::NAME, wire, "an event from another node was not understood"),
        }
    }

    fn resync(&self) {
        (self.handle)(Delivery::Resync)
    }
}

#[derive(Default)]
struct Inner {
    handlers: RwLock<HashMap<&'static str, Vec<Arc<dyn Handler>>>>,
    remote: RwLock<Option<Arc<dyn Remote>>>,
}

/// The node's event bus. Cheap to clone.
#[derive(Clone, Default)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `handle` for every event of topic `T`, and on every resync.
    pub fn subscribe<T: Topic>(&self, handle: impl Fn(Delivery<'_, T>) + Send + Sync + 'static) {
        let handler: Arc<dyn Handler> = Arc::new(Typed { handle, _topic: PhantomData });
        let mut handlers = self.inner.handlers.write().unwrap_or_else(|e| e.into_inner());
        handlers.entry(T::NAME).or_default().push(handler);
    }

    // Handlers run under the read lock: subscriptions are made while the
    // node is built, never while events flow, so no writer ever waits.
    fn handlers(&self) -> std::sync::RwLockReadGuard<'_, HashMap<&'static str, Vec<Arc<dyn Handler>>>> {
        self.inner.handlers.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Events of a transaction this node committed, in commit order.
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        let handlers = self.handlers();
        for event in events {
            for handler in handlers.get(event.topic).into_iter().flatten() {
                handler.local(&event);
            }
        }
    }

    /// An event another node committed (its topic and wire form).
    pub fn receive(&self, topic: &str, wire: &str) {
        for handler in self.handlers().get(topic).into_iter().flatten() {
            handler.remote(wire);
        }
    }

    /// Tells every subscriber that events may have been missed.
    pub fn resync(&self) {
        for handler in self.handlers().values().flatten() {
            handler.resync();
        }
    }

    /// Connects the bus to the other nodes (a backend shared by several).
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        *self.inner.remote.write().unwrap_or_else(|e| e.into_inner()) = Some(remote);
    }

    /// Whether other nodes may be listening.
    pub fn is_shared(&self) -> bool {
        self.inner.remote.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Announces events that no transaction carries (e.g. a frame for a
    /// socket on another node): to the other nodes first, then here.
    pub async fn broadcast(&self, events: Vec<Event>) -> StoreResult<()> {
        let remote = self.inner.remote.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(remote) = remote {
            let wires: Vec<_> = events.iter().filter_map(|e| Some((e.topic, e.wire()?))).collect();
            if !wires.is_empty() {
                remote.send(wires).await?;
            }
        }
        self.publish(events);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, PartialEq)]
    struct Ping(u32, Option<&'static str>);

    impl Topic for Ping {
        const NAME: &'static str = "ping";
        fn encode(&self) -> Option<String> {
            Some(self.0.to_string())
        }
        fn decode(wire: &str) -> Option<Self> {
            wire.parse().ok().map(|n| Ping(n, None))
        }
    }

    #[test]
    fn subscribers_get_local_events_with_data_and_remote_ones_decoded() {
        let bus = Bus::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        bus.subscribe::<Ping>(move |d| {
            log.lock().unwrap().push(match d {
                Delivery::Event(p) => format!("{}:{:?}", p.0, p.1),
                Delivery::Resync => "resync".into(),
            })
        });
        bus.publish([Event::new(Ping(1, Some("local")))]);
        bus.receive("ping", "2");
        bus.receive("ping", "not a number");
        bus.receive("other", "3");
        bus.resync();
        assert_eq!(*seen.lock().unwrap(), ["1:Some(\"local\")", "2:None", "resync"]);
    }
}
