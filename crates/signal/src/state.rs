//! The signaling state of a node, as seed 003 keeps it: users (each with
//! the set of its sockets), who calls whom (the waiting list), and pairs.
//! One mutex guards it; handlers are short and never await.
//!
//! Frames to a socket go into that socket's bounded outbox in the order the
//! state changed, so every client sees events in a consistent order; a
//! socket whose outbox is full is closed rather than allowed to grow.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::gateway::{CloseHandle, CloseReason, ConnId};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::protocol::{Inbound, Route, frame};

/// A user's place in a call (seed 003's statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

pub(crate) struct Socket {
    pub user: Option<String>,
    outbox: mpsc::Sender<String>,
    close: CloseHandle,
}

pub(crate) struct User {
    pub name: Value,
    pub photo: Value,
    pub device: Value,
    pub sockets: BTreeSet<ConnId>,
    pub status: Status,
    /// The other user of the call being set up or held.
    pub candidate: Option<String>,
    /// The socket of this user that is in the call (the one that offered or
    /// answered); other devices of the user are left out of it.
    pub call_socket: Option<ConnId>,
    /// ICE candidates this user gathered, and how many the peer has.
    pub ice: Vec<Value>,
    pub ice_sent: usize,
    pub stream_ids: Value,
    /// Counts departures of the last socket; a grace timer acts only if the
    /// user has not come back since.
    pub absence: u64,
}

/// An offer ringing a callee.
pub(crate) struct Offer {
    pub call: u64,
    pub caller: String,
    pub sdp: Value,
    pub stream_ids: Value,
    pub extra: Map<String, Value>,
    pub started: Instant,
}

/// Something to do later, scheduled by the caller of the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// End the offer `call` to `callee` if nobody answered it.
    Ring { callee: String, call: u64 },
    /// End `user`'s call if it has not reconnected.
    Grace { user: String, absence: u64 },
}

/// What a frame caused, besides the frames sent.
#[derive(Debug, Default)]
pub struct Effects {
    pub timers: Vec<(Duration, Timer)>,
    /// A call was connected, this long after its offer.
    pub setup: Option<Duration>,
}

/// Timings the state needs.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub ringing: Duration,
    pub grace: Duration,
}

/// The `iceServers` (TURN credentials) for a user, if configured.
pub type IceServers = Box<dyn Fn(&str) -> Option<Value> + Send>;

/// The node's signaling state.
pub struct State {
    pub(crate) sockets: HashMap<ConnId, Socket>,
    pub(crate) users: HashMap<String, User>,
    /// Callee → the offer ringing it.
    pub(crate) waiting: HashMap<String, Offer>,
    pub(crate) next_call: u64,
    pub(crate) timings: Timings,
    /// `iceServers` for a user (TURN credentials), if configured.
    pub(crate) ice_servers: IceServers,
}

impl State {
    pub fn new(timings: Timings, ice_servers: IceServers) -> Self {
        Self {
            sockets: HashMap::new(),
            users: HashMap::new(),
            waiting: HashMap::new(),
            next_call: 1,
            timings,
            ice_servers,
        }
    }

    /// A socket opened; it says who it is with `ADD_USER` or `RECONNECT`.
    pub fn attach(&mut self, conn: ConnId, outbox: mpsc::Sender<String>, close: CloseHandle) {
        self.sockets.insert(conn, Socket { user: None, outbox, close });
    }

    /// Queues a frame for a socket; closes the socket if it cannot keep up.
    pub(crate) fn push(&mut self, conn: ConnId, text: String) {
        let Some(socket) = self.sockets.get(&conn) else { return };
        if let Err(mpsc::error::TrySendError::Full(_)) = socket.outbox.try_send(text) {
            socket.close.close(CloseReason::TOO_SLOW);
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

    /// Handles one frame from a socket.
    pub fn handle(&mut self, conn: ConnId, frame: Inbound, now: Instant) -> Result<Effects, ApiError> {
        match frame.route {
            Route::AddUser => Ok(self.add_user(conn, &frame)),
            Route::Reconnect => Ok(self.reconnect(conn, &frame)),
            route => {
                let bound = self.sockets.get(&conn).and_then(|s| s.user.clone());
                match bound {
                    None => Err(ApiError::new(ErrorCode::NotRegistered, "send ADD_USER first")),
                    Some(user) if user != frame.user => Err(ApiError::new(
                        ErrorCode::WrongUser,
                        format!("this socket belongs to user {user:?}, not {:?}", frame.user),
                    )),
                    Some(_) => self.call_route(route, conn, &frame, now),
                }
            }
        }
    }

    fn call_route(&mut self, route: Route, conn: ConnId, f: &Inbound, now: Instant) -> Result<Effects, ApiError> {
        match route {
            Route::Offer => self.offer(conn, f, now),
            Route::Answer => self.answer(conn, f, now),
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
    fn bind(&mut self, conn: ConnId, user: &str) -> Option<Timer> {
        let previous = self.sockets.get_mut(&conn).and_then(|s| s.user.replace(user.to_owned()));
        let timer = match previous {
            Some(old) if old != user => self.leave(conn, &old),
            _ => None,
        };
        if let Some(u) = self.users.get_mut(user) {
            u.sockets.insert(conn);
            u.absence += 1;
        }
        timer
    }

    fn add_user(&mut self, conn: ConnId, f: &Inbound) -> Effects {
        let user = self.users.entry(f.user.clone()).or_insert_with(|| User {
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
            absence: 0,
        });
        for (field, slot) in [("name", &mut user.name), ("photo", &mut user.photo), ("device", &mut user.device)] {
            if let Some(v) = f.data.get(field) {
                *slot = v.clone();
            }
        }
        let status = user.status;
        let mut effects = Effects::default();
        effects.timers.extend(self.bind(conn, &f.user).map(|t| (self.timings.grace, t)));
        let mut data = json!({"userId": f.user, "status": status});
        if let Some(servers) = (self.ice_servers)(&f.user) {
            data["iceServers"] = servers;
        }
        self.push(conn, frame("userConnect", data));
        // A device joining while the user is being called rings too.
        if let Some(offer) = self.waiting.get(&f.user) {
            let (call, streams) = self.call_frames(offer);
            self.push(conn, call);
            self.push(conn, streams);
        }
        effects
    }

    fn reconnect(&mut self, conn: ConnId, f: &Inbound) -> Effects {
        if !self.users.contains_key(&f.user) {
            let data = json!({"userId": f.user, "message": "no session to restore; send ADD_USER"});
            self.push(conn, frame("reconnectError", data));
            return Effects::default();
        }
        let mut effects = Effects::default();
        effects.timers.extend(self.bind(conn, &f.user).map(|t| (self.timings.grace, t)));
        let user = self.users.get_mut(&f.user).expect("checked above");
        if user.candidate.is_some() && user.call_socket.is_none_or(|c| !user.sockets.contains(&c)) {
            user.call_socket = Some(conn);
        }
        let (status, candidate) = (user.status, user.candidate.clone());
        let peer_streams = candidate.as_ref().and_then(|p| self.users.get(p)).map(|p| p.stream_ids.clone());
        let mut data =
            json!({"userId": f.user, "status": status, "candidate": candidate, "remoteStreamIds": peer_streams});
        if let Some(servers) = (self.ice_servers)(&f.user) {
            data["iceServers"] = servers;
        }
        self.push(conn, frame("reconnectSuccess", data));
        // Only a connected peer cares; a callee still ringing does not.
        if let Some(peer) = self.peer_of(&f.user) {
            self.send_call(&peer, "/peerReconnected", json!({"userId": f.user}));
        }
        effects
    }

    /// A socket closed; returns the grace timer if it was its user's last.
    pub fn detach(&mut self, conn: ConnId) -> Option<(Duration, Timer)> {
        let socket = self.sockets.remove(&conn)?;
        let user = socket.user?;
        self.leave(conn, &user).map(|t| (self.timings.grace, t))
    }

    fn leave(&mut self, conn: ConnId, user: &str) -> Option<Timer> {
        let u = self.users.get_mut(user)?;
        u.sockets.remove(&conn);
        if !u.sockets.is_empty() {
            return None;
        }
        u.absence += 1;
        Some(Timer::Grace { user: user.to_owned(), absence: u.absence })
    }

    /// The grace period of a user without sockets ran out: its call ends
    /// and its session is forgotten.
    pub(crate) fn grace_over(&mut self, user: &str, absence: u64) {
        let gone = self.users.get(user).is_some_and(|u| u.absence == absence && u.sockets.is_empty());
        if !gone {
            return;
        }
        self.end_involvement(user, "peer_lost");
        self.users.remove(user);
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
            u.ice.clear();
            u.ice_sent = 0;
        }
    }

    /// Users with an open socket, calls ringing, calls connected.
    pub fn census(&self) -> (usize, usize, usize) {
        let online = self.users.values().filter(|u| !u.sockets.is_empty()).count();
        let in_call = self.users.values().filter(|u| u.status == Status::InCall).count() / 2;
        (online, self.waiting.len(), in_call)
    }
}
