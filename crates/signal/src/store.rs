//! Where the signaling state lives. One node keeps it in memory
//! ([`MemoryStore`]); several nodes keep it in PostgreSQL, each step taking
//! the part of the state it concerns under one lock (the PostgreSQL
//! backend's signal module). Either way a step is atomic with respect to
//! every other step, on every node, and the frames it sends go out on the
//! bus as [`Frames`], delivered by whichever node holds each socket.

use std::sync::Mutex;

use async_trait::async_trait;
use relayhub_core::bus::{Bus, Event, Topic};
use relayhub_core::error::ApiError;
use relayhub_core::gateway::ConnId;
use relayhub_core::store::StoreResult;

use crate::overview::Overview;
use crate::state::{Census, Effects, Env, State, Step};

/// Frames for sockets, on whichever node holds them, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frames(pub Vec<(ConnId, String)>);

impl Topic for Frames {
    const NAME: &'static str = "signal";

    fn encode(&self) -> Option<String> {
        let pairs: Vec<(u64, &str)> = self.0.iter().map(|(c, t)| (c.0, t.as_str())).collect();
        serde_json::to_string(&pairs).ok()
    }

    fn decode(wire: &str) -> Option<Self> {
        let pairs: Vec<(u64, String)> = serde_json::from_str(wire).ok()?;
        Some(Frames(pairs.into_iter().map(|(c, t)| (ConnId(c), t)).collect()))
    }
}

/// Storage of the signaling state.
#[async_trait]
pub trait SignalStore: Send + Sync + 'static {
    /// Applies `step` ([`State::apply`]) atomically with respect to every
    /// other step on every node, and publishes the frames it sends. The
    /// outer error is the store's; the inner one refuses the frame.
    async fn step(&self, step: Step, env: Env) -> StoreResult<Result<Effects, ApiError>>;
    /// Users online, calls ringing and connected, across the nodes.
    async fn census(&self) -> StoreResult<Census>;
    /// A license's calls in progress and users online, across the nodes
    /// (the console's calls page).
    async fn overview(&self, license: i64) -> StoreResult<Overview>;
}

/// The state of one node, in memory.
pub struct MemoryStore {
    state: Mutex<State>,
    bus: Bus,
}

impl MemoryStore {
    pub fn new(bus: Bus) -> Self {
        Self { state: Mutex::new(State::new()), bus }
    }
}

#[async_trait]
impl SignalStore for MemoryStore {
    async fn step(&self, step: Step, env: Env) -> StoreResult<Result<Effects, ApiError>> {
        if matches!(step, Step::Expire { .. }) {
            let due = self.state.lock().unwrap_or_else(|e| e.into_inner()).next_deadline();
            if due.is_none_or(|at| at > env.now) {
                return Ok(Ok(Effects::default()));
            }
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let result = state.apply(step, &env);
        let frames = std::mem::take(&mut state.outgoing);
        // Published under the lock: frames of successive steps go out in
        // the order the steps ran.
        if !frames.is_empty() {
            self.bus.publish([Event::new(Frames(frames))]);
        }
        Ok(result)
    }

    async fn census(&self) -> StoreResult<Census> {
        Ok(self.state.lock().unwrap_or_else(|e| e.into_inner()).census())
    }

    async fn overview(&self, license: i64) -> StoreResult<Overview> {
        Ok(Overview::of(&self.state.lock().unwrap_or_else(|e| e.into_inner()), license))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_nodes_in_order() {
        let frames = Frames(vec![(ConnId(1 << 40), "{\"route\":\"/call\"}".into()), (ConnId(7), "PONG|x".into())]);
        assert_eq!(Frames::decode(&frames.encode().unwrap()), Some(frames));
        assert_eq!(Frames::decode("nope"), None);
    }
}
