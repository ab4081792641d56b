//! The signaling state, as seed 003 keeps it: users (each with the set of
//! its sockets), who calls whom (the waiting list), and pairs — and the one
//! function that moves it, [`State::apply`].
//!
//! The state is plain data with no clock or socket in it: a step gets the
//! time and the node's settings in an [`Env`], and what it sends is
//! collected in [`State::outgoing`], addressed by socket id, for whichever
//! node holds each socket. So the same state machine runs on one node with
//! the whole state in memory, and across nodes on the part of the state a
//! step concerns, loaded from PostgreSQL under a lock ([`State::missing`]
//! names what else a step needs).
//!
//! Time limits are deadlines kept in the state (an offer's ringing
//! timeout, a user's reconnect grace), acted on by [`Step::Expire`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use relayhub_core::error::ApiError;
use relayhub_core::gateway::ConnId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::codes;
use crate::protocol::{Inbound, Route, frame};

/// A user's place in a call (seed 003's statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Idle,
    Calling,
    Ringing,
    InCall,
    Ended,
}

impl Status {
    /// Whether the user is taken by a call.
    pub fn busy(self) -> bool {
        matches!(self, Status::Calling | Status::Ringing | Status::InCall)
    }
}

/// A signaling user. Its sockets are not part of its stored document: they
/// are where they are (see [`State::sockets`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: Value,
    pub photo: Value,
    pub device: Value,
    #[serde(skip)]
    pub sockets: BTreeSet<ConnId>,
    pub status: Status,
    /// The other user of the call being set up or held.
    pub candidate: Option<String>,
    /// The socket of this user that is in the call (the one that offered,
    /// answered, or last sent `RECONNECT`); other devices of the user are
    /// left out of it.
    #[serde(with = "conn_opt")]
    pub call_socket: Option<ConnId>,
    /// ICE candidates this user gathered, and how many the peer has.
    pub ice: Vec<Value>,
    pub ice_sent: usize,
    pub stream_ids: Value,
    /// Set when its last socket left: the call ends at this time (Unix
    /// milliseconds) unless a socket comes back.
    pub grace_until: Option<i64>,
    /// The license of a signed-in user (`signal.require_user`): it calls,
    /// and is called by, users of its license only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<i64>,
    /// When this user answered the call it is in (Unix milliseconds): set
    /// on the callee only, so a pair says who called whom, and since when
    /// (the console's calls page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<i64>,
}

impl User {
    fn new() -> Self {
        Self {
            name: Value::Null,
            photo: Value::Null,
            device: Value::Null,
            sockets: BTreeSet::new(),
            status: Status::Idle,
            candidate: None,
            call_socket: None,
            ice: Vec::new(),
            ice_sent: 0,
            stream_ids: Value::Null,
            grace_until: None,
            license: None,
            answered_at: None,
        }
    }
}

mod conn_opt {
    use relayhub_core::gateway::ConnId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(conn: &Option<ConnId>, s: S) -> Result<S::Ok, S::Error> {
        match conn {
            Some(c) => s.serialize_some(&c.0),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ConnId>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(ConnId))
    }
}

/// An offer ringing a callee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub call: u64,
    pub caller: String,
    pub sdp: Value,
    pub stream_ids: Value,
    pub extra: Map<String, Value>,
    /// When it was made and when it stops ringing (Unix milliseconds).
    pub started: i64,
    pub deadline: i64,
}

/// Timings the state needs.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub ringing: Duration,
    pub grace: Duration,
}

/// The `iceServers` (TURN credentials) for a user, if configured.
pub type IceServers = Arc<dyn Fn(&str) -> Option<Value> + Send + Sync>;

/// What a step runs with: the time and this node's settings.
#[derive(Clone)]
pub struct Env {
    /// Unix milliseconds.
    pub now: i64,
    pub timings: Timings,
    pub ice_servers: IceServers,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One change to the state.
#[derive(Debug, Clone)]
pub enum Step {
    /// A socket opened; it says who it is with `ADD_USER` or `RECONNECT`.
    Attach(ConnId),
    /// A socket closed.
    Detach(ConnId),
    /// A socket sent a frame.
    Frame(ConnId, Inbound),
    /// Acts on the deadlines that passed, after detaching `gone`: sockets
    /// whose node stopped without closing them.
    Expire { gone: Vec<ConnId> },
}

/// What a step caused, besides the frames sent.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// A call was connected, this long after its offer.
    pub setup: Option<Duration>,
}

/// Users with an open socket, calls ringing, calls connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub users: usize,
    pub ringing: usize,
    pub in_call: usize,
}

/// The signaling state (all of it, or the part a step concerns).
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Sockets and the user each says it is.
    pub sockets: HashMap<ConnId, Option<String>>,
    pub users: HashMap<String, User>,
    /// Callee → the offer ringing it.
    pub waiting: HashMap<String, Offer>,
    /// The number the next offer gets.
    pub next_call: u64,
    /// Frames to send, in order, by socket.
    pub outgoing: Vec<(ConnId, String)>,
}

impl State {
    pub fn new() -> Self {
        Self { next_call: 1, ..Self::default() }
    }

    /// Queues a frame for a socket.
    pub(crate) fn push(&mut self, conn: ConnId, text: String) {
        if self.sockets.contains_key(&conn) {
            self.outgoing.push((conn, text));
        }
    }

    /// To every socket of a user.
    pub(crate) fn send_user(&mut self, user: &str, route: &str, data: Value) {
        let sockets: Vec<ConnId> =
            self.users.get(user).map(|u| u.sockets.iter().copied().collect()).unwrap_or_default();
        let text = frame(route, data);
        for conn in sockets {
            self.push(conn, text.clone());
        }
    }

    /// To the user's socket in the call, or to all its sockets.
    pub(crate) fn send_call(&mut self, user: &str, route: &str, data: Value) {
        let target = self.users.get(user).and_then(|u| u.call_socket.filter(|c| u.sockets.contains(c)));
        match target {
            Some(conn) => self.push(conn, frame(route, data)),
            None => self.send_user(user, route, data),
        }
    }

    /// Users a step needs, from what it names: the socket's user, the
    /// frame's user and the callee it names. [`State::missing`] adds the
    /// rest once these are loaded.
    pub fn seeds(step: &Step, socket_user: Option<&str>) -> Vec<String> {
        let mut seeds: Vec<String> = socket_user.map(str::to_owned).into_iter().collect();
        if let Step::Frame(_, f) = step {
            seeds.push(f.user.clone());
            if let Some(callee) = crate::calls::callee_of(f) {
                seeds.push(callee);
            }
        }
        seeds
    }

    /// Users the loaded part of the state refers to but does not hold:
    /// candidates, offers' callers. Empty once a step has all it needs.
    pub fn missing(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .users
            .values()
            .filter_map(|u| u.candidate.clone())
            .chain(self.waiting.values().map(|o| o.caller.clone()))
            .chain(self.waiting.keys().cloned())
            .filter(|name| !self.users.contains_key(name))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Applies one step.
    pub fn apply(&mut self, step: Step, env: &Env) -> Result<Effects, ApiError> {
        match step {
            Step::Attach(conn) => {
                self.sockets.insert(conn, None);
                Ok(Effects::default())
            }
            Step::Detach(conn) => {
                self.detach(conn, env);
                Ok(Effects::default())
            }
            Step::Frame(conn, frame) => self.handle(conn, frame, env),
            Step::Expire { gone } => {
                for conn in gone {
                    self.detach(conn, env);
                }
                self.expire(env);
                Ok(Effects::default())
            }
        }
    }

    fn handle(&mut self, conn: ConnId, frame: Inbound, env: &Env) -> Result<Effects, ApiError> {
        match frame.route {
            Route::AddUser => Ok(self.add_user(conn, &frame, env)),
            Route::Reconnect => Ok(self.reconnect(conn, &frame, env)),
            route => {
                let bound = self.sockets.get(&conn).cloned().flatten();
                match bound {
                    None => Err(ApiError::new(codes::NOT_REGISTERED, "send ADD_USER first")),
                    Some(user) if user != frame.user => Err(ApiError::new(
                        codes::WRONG_USER,
                        format!("this socket belongs to user {user:?}, not {:?}", frame.user),
                    )),
                    Some(_) => self.call_route(route, conn, &frame, env),
                }
            }
        }
    }

    fn call_route(&mut self, route: Route, conn: ConnId, f: &Inbound, env: &Env) -> Result<Effects, ApiError> {
        match route {
            Route::Offer => self.offer(conn, f, env),
            Route::Answer => self.answer(conn, f, env),
            Route::Decline => self.decline(conn, f),
            Route::Hangup => self.hangup(conn, f),
            Route::AddIce => self.add_ice(f),
            Route::SwapIce => self.swap_ice(f),
            Route::SetRemoteStreamId => self.set_stream_ids(f),
            Route::UpdateOffer => self.relay_to_peer(f, "sdp", "/updateOffer"),
            Route::UpdateAnswer => self.relay_to_peer(f, "answer", "/updateAnswer"),
            Route::MediaUpdate => self.relay_to_peer(f, "muted", "/mediaUpdate"),
            Route::AddUser | Route::Reconnect => Ok(Effects::default()),
        }
    }

    /// Binds the socket to the user (leaving any other user it had).
    fn bind(&mut self, conn: ConnId, user: &str, env: &Env) {
        let previous = self.sockets.insert(conn, Some(user.to_owned())).flatten();
        if let Some(old) = previous.filter(|old| old != user) {
            self.leave(conn, &old, env);
        }
        if let Some(u) = self.users.get_mut(user) {
            u.sockets.insert(conn);
            u.grace_until = None;
        }
    }

    fn add_user(&mut self, conn: ConnId, f: &Inbound, env: &Env) -> Effects {
        let user = self.users.entry(f.user.clone()).or_insert_with(User::new);
        for (field, slot) in [("name", &mut user.name), ("photo", &mut user.photo), ("device", &mut user.device)] {
            if let Some(v) = f.data.get(field) {
                *slot = v.clone();
            }
        }
        user.license = f.license;
        let (status, name) = (user.status, user.name.clone());
        self.bind(conn, &f.user, env);
        let mut data = json!({"userId": f.user, "status": status, "name": name});
        if let Some(servers) = (env.ice_servers)(&f.user) {
            data["iceServers"] = servers;
        }
        self.push(conn, frame("userConnect", data));
        // A device joining while the user is being called rings too.
        if let Some(offer) = self.waiting.get(&f.user) {
            let (call, streams) = self.call_frames(offer);
            self.push(conn, call);
            self.push(conn, streams);
        }
        Effects::default()
    }

    /// `RECONNECT`: the socket takes up the user's session, and its call —
    /// the socket that was in it may be on a node that is gone.
    fn reconnect(&mut self, conn: ConnId, f: &Inbound, env: &Env) -> Effects {
        if !self.users.contains_key(&f.user) {
            let data = json!({"userId": f.user, "message": "no session to restore; send ADD_USER"});
            self.push(conn, frame("reconnectError", data));
            return Effects::default();
        }
        self.bind(conn, &f.user, env);
        let user = self.users.get_mut(&f.user).expect("checked above");
        user.license = f.license;
        if let Some(name) = f.data.get("name").filter(|_| f.license.is_some()) {
            user.name = name.clone();
        }
        if user.candidate.is_some() {
            user.call_socket = Some(conn);
        }
        let (status, candidate) = (user.status, user.candidate.clone());
        let peer_streams = candidate.as_ref().and_then(|p| self.users.get(p)).map(|p| p.stream_ids.clone());
        let mut data =
            json!({"userId": f.user, "status": status, "candidate": candidate, "remoteStreamIds": peer_streams});
        if let Some(servers) = (env.ice_servers)(&f.user) {
            data["iceServers"] = servers;
        }
        self.push(conn, frame("reconnectSuccess", data));
        // Only a connected peer cares; a callee still ringing does not.
        if let Some(peer) = self.peer_of(&f.user) {
            self.send_call(&peer, "/peerReconnected", json!({"userId": f.user}));
        }
        Effects::default()
    }

    /// A socket closed; its user's grace period starts if it was the last.
    fn detach(&mut self, conn: ConnId, env: &Env) {
        if let Some(Some(user)) = self.sockets.remove(&conn) {
            self.leave(conn, &user, env);
        }
        self.outgoing.retain(|(c, _)| *c != conn);
    }

    fn leave(&mut self, conn: ConnId, user: &str, env: &Env) {
        let Some(u) = self.users.get_mut(user) else { return };
        u.sockets.remove(&conn);
        if u.sockets.is_empty() {
            u.grace_until = Some(env.now.saturating_add(millis(env.timings.grace)));
        }
    }

    /// Acts on the deadlines that passed: unanswered offers end for both
    /// sides; users whose grace ran out lose their call and session.
    fn expire(&mut self, env: &Env) {
        let rung: Vec<(String, u64)> = self
            .waiting
            .iter()
            .filter(|(_, o)| o.deadline <= env.now)
            .map(|(callee, o)| (callee.clone(), o.call))
            .collect();
        for (callee, call) in rung {
            self.ring_over(&callee, call);
        }
        let gone: Vec<String> = self
            .users
            .iter()
            .filter(|(_, u)| u.sockets.is_empty() && u.grace_until.is_some_and(|t| t <= env.now))
            .map(|(name, _)| name.clone())
            .collect();
        for user in gone {
            self.end_involvement(&user, "peer_lost");
            self.users.remove(&user);
        }
    }

    /// Ends whatever call `user` is in or setting up, telling the other side.
    pub(crate) fn end_involvement(&mut self, user: &str, reason: &str) {
        if let Some(offer) = self.waiting.remove(user) {
            self.send_call(&offer.caller, "/hangup", json!({"userId": user, "reason": reason}));
            self.reset(&offer.caller, Status::Ended);
        }
        let callees: Vec<String> =
            self.waiting.iter().filter(|(_, o)| o.caller == user).map(|(callee, _)| callee.clone()).collect();
        for callee in callees {
            self.waiting.remove(&callee);
            self.send_user(&callee, "/hangup", json!({"userId": user, "reason": "cancelled"}));
        }
        let peer = self.users.get(user).and_then(|u| u.candidate.clone());
        if let Some(peer) = peer.filter(|p| self.users.get(p).is_some_and(|p| p.candidate.as_deref() == Some(user))) {
            self.send_call(&peer, "/hangup", json!({"userId": user, "reason": reason}));
            self.reset(&peer, Status::Ended);
        }
        self.reset(user, Status::Ended);
    }

    /// Leaves a call: the status given, no candidate, no call socket or ICE.
    pub(crate) fn reset(&mut self, user: &str, status: Status) {
        if let Some(u) = self.users.get_mut(user) {
            u.status = status;
            u.candidate = None;
            u.call_socket = None;
            u.answered_at = None;
            u.ice.clear();
            u.ice_sent = 0;
        }
    }

    /// Users with an open socket, calls ringing, calls connected.
    pub fn census(&self) -> Census {
        Census {
            users: self.users.values().filter(|u| !u.sockets.is_empty()).count(),
            ringing: self.waiting.len(),
            in_call: self.users.values().filter(|u| u.status == Status::InCall).count() / 2,
        }
    }

    /// The earliest deadline in the state, if any.
    pub fn next_deadline(&self) -> Option<i64> {
        let offers = self.waiting.values().map(|o| o.deadline);
        let graces = self.users.values().filter(|u| u.sockets.is_empty()).filter_map(|u| u.grace_until);
        offers.chain(graces).min()
    }
}
