//! Setting up and ending calls, as seed 003's diagrams show them, with what
//! they leave open decided as mature signaling servers do:
//!
//! - OFFER: caller `calling`; every socket of the callee rings (`/call`,
//!   `/remoteStreamsId`); the offer waits for an answer until the ringing
//!   timeout. Calling a user who is calling you (glare) is refused with
//!   `glare`: the earlier offer stands, so there is one call, not two halves.
//! - ANSWER: callee `ringing`, the pair is set, `/acceptCall` to the caller,
//!   `/remoteStreamsId` both ways, `/connect` to both; the callee's other
//!   devices stop ringing (`/hangup`, `answered_elsewhere`).
//! - DECLINE: callee `idle`, caller `ended` and told (`/decline`).
//! - HANGUP, from either side, at any point: the other side gets `/hangup`.

use std::time::Duration;

use relayhub_core::error::ApiError;
use relayhub_core::gateway::ConnId;
use serde_json::{Value, json};

use crate::codes;
use crate::protocol::{Inbound, Route, frame};
use crate::state::{Effects, Env, Offer, State, Status};

/// The callee an `OFFER` names (`candidateId`, or seed 003's `candidates`).
pub(crate) fn callee_of(f: &Inbound) -> Option<String> {
    if f.route != Route::Offer {
        return None;
    }
    match f.data.get("candidateId").or_else(|| f.data.get("candidates")) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

impl State {
    /// The `/call` and `/remoteStreamsId` frames of an offer.
    pub(crate) fn call_frames(&self, offer: &Offer) -> (String, String) {
        let caller = self.users.get(&offer.caller);
        let mut data = json!({
            "sdp": offer.sdp,
            "userId": offer.caller,
            "name": caller.map(|c| c.name.clone()).unwrap_or(Value::Null),
            "photo": caller.map(|c| c.photo.clone()).unwrap_or(Value::Null),
            "device": caller.map(|c| c.device.clone()).unwrap_or(Value::Null),
        });
        for (k, v) in &offer.extra {
            data[k] = v.clone();
        }
        (
            frame("/call", data),
            frame("/remoteStreamsId", json!({"streamIds": offer.stream_ids, "userId": offer.caller})),
        )
    }

    pub(crate) fn offer(&mut self, conn: ConnId, f: &Inbound, env: &Env) -> Result<Effects, ApiError> {
        let callee = callee_of(f).ok_or_else(|| crate::protocol::missing("data.candidateId"))?;
        let sdp = f.field("sdp")?.clone();
        let caller = &f.user;
        if &callee == caller {
            return Err(ApiError::invalid_field("a user cannot call itself"));
        }
        if self.users.get(caller).is_some_and(|u| u.status.busy()) {
            return Err(ApiError::new(codes::ALREADY_IN_CALL, "end the current call first (HANGUP)"));
        }
        // A user of another license is not there at all, as everywhere.
        let license = self.users.get(caller).and_then(|u| u.license);
        let Some(target) = self.users.get(&callee).filter(|u| !u.sockets.is_empty() && u.license == license) else {
            return Err(ApiError::new(codes::PEER_UNAVAILABLE, format!("user {callee:?} is not connected")));
        };
        if self.waiting.get(caller).is_some_and(|o| o.caller == callee) {
            return Err(ApiError::new(
                codes::GLARE,
                format!("user {callee:?} is calling you at this moment; answer that call"),
            ));
        }
        if target.status.busy() || self.waiting.contains_key(&callee) {
            return Err(ApiError::new(codes::PEER_BUSY, format!("user {callee:?} is in another call")));
        }
        let call = self.next_call;
        self.next_call += 1;
        let stream_ids = f.get("streamIds");
        let offer = Offer {
            call,
            caller: caller.clone(),
            sdp,
            stream_ids: stream_ids.clone(),
            extra: f.rest(&["candidateId", "candidates", "sdp", "streamIds"]),
            started: env.now,
            deadline: env.now.saturating_add(i64::try_from(env.timings.ringing.as_millis()).unwrap_or(i64::MAX)),
        };
        if let Some(u) = self.users.get_mut(caller) {
            u.status = Status::Calling;
            u.candidate = Some(callee.clone());
            u.call_socket = Some(conn);
            u.stream_ids = stream_ids;
        }
        let (call_frame, streams_frame) = self.call_frames(&offer);
        self.waiting.insert(callee.clone(), offer);
        let sockets: Vec<ConnId> =
            self.users.get(&callee).map(|u| u.sockets.iter().copied().collect()).unwrap_or_default();
        for socket in sockets {
            self.push(socket, call_frame.clone());
            self.push(socket, streams_frame.clone());
        }
        Ok(Effects::default())
    }

    pub(crate) fn answer(&mut self, conn: ConnId, f: &Inbound, env: &Env) -> Result<Effects, ApiError> {
        let answer = f.field("answer")?.clone();
        let callee = f.user.clone();
        let offer = self.waiting.remove(&callee).ok_or_else(|| ApiError::new(codes::NO_CALL, "no call to answer"))?;
        let caller = offer.caller.clone();
        let still_calling = self
            .users
            .get(&caller)
            .is_some_and(|u| u.status == Status::Calling && u.candidate.as_ref() == Some(&callee));
        if !still_calling {
            return Err(ApiError::new(codes::NO_CALL, "the caller has hung up"));
        }
        let callee_streams = f.get("streamIds");
        let device = {
            let u = self
                .users
                .get_mut(&callee)
                .ok_or_else(|| ApiError::new(codes::NOT_REGISTERED, "send ADD_USER first"))?;
            u.status = Status::Ringing;
            u.candidate = Some(caller.clone());
            u.call_socket = Some(conn);
            u.answered_at = Some(env.now);
            if !callee_streams.is_null() {
                u.stream_ids = callee_streams.clone();
            }
            u.device.clone()
        };
        self.send_call(&caller, "/acceptCall", json!({"answer": answer, "device": device, "userId": callee}));
        self.push(conn, frame("/remoteStreamsId", json!({"streamIds": offer.stream_ids, "userId": caller})));
        if !callee_streams.is_null() {
            self.send_call(&caller, "/remoteStreamsId", json!({"streamIds": callee_streams, "userId": callee}));
        }
        let others: Vec<ConnId> = self
            .users
            .get(&callee)
            .map(|u| u.sockets.iter().copied().filter(|c| *c != conn).collect())
            .unwrap_or_default();
        let elsewhere = frame("/hangup", json!({"userId": caller, "reason": "answered_elsewhere"}));
        for other in others {
            self.push(other, elsewhere.clone());
        }
        self.send_call(&caller, "/connect", json!({"userId": callee}));
        self.push(conn, frame("/connect", json!({"userId": caller})));
        let setup = u64::try_from(env.now.saturating_sub(offer.started)).unwrap_or(0);
        Ok(Effects { setup: Some(Duration::from_millis(setup)) })
    }

    pub(crate) fn decline(&mut self, conn: ConnId, f: &Inbound) -> Result<Effects, ApiError> {
        let callee = f.user.clone();
        let Some(offer) = self.waiting.remove(&callee) else {
            // Declining an answered call is hanging up.
            return self.hangup(conn, f);
        };
        let name = self.users.get(&callee).map(|u| u.name.clone()).unwrap_or(Value::Null);
        self.send_call(&offer.caller, "/decline", json!({"name": name, "userId": callee}));
        self.reset(&offer.caller, Status::Ended);
        self.reset(&callee, Status::Idle);
        let others: Vec<ConnId> = self
            .users
            .get(&callee)
            .map(|u| u.sockets.iter().copied().filter(|c| *c != conn).collect())
            .unwrap_or_default();
        let elsewhere = frame("/hangup", json!({"userId": offer.caller, "reason": "declined_elsewhere"}));
        for other in others {
            self.push(other, elsewhere.clone());
        }
        Ok(Effects::default())
    }

    pub(crate) fn hangup(&mut self, _conn: ConnId, f: &Inbound) -> Result<Effects, ApiError> {
        let user = &f.user;
        let involved = self.waiting.contains_key(user)
            || self.waiting.values().any(|o| &o.caller == user)
            || self.users.get(user).is_some_and(|u| u.candidate.is_some());
        if !involved {
            return Err(ApiError::new(codes::NO_CALL, "no call to hang up"));
        }
        self.end_involvement(user, "hangup");
        Ok(Effects::default())
    }

    /// The ringing timeout of offer `call` ran out: unanswered, it ends for
    /// both sides.
    pub(crate) fn ring_over(&mut self, callee: &str, call: u64) {
        if self.waiting.get(callee).is_none_or(|o| o.call != call) {
            return;
        }
        let Some(offer) = self.waiting.remove(callee) else { return };
        self.send_call(&offer.caller, "/hangup", json!({"userId": callee, "reason": "no_answer"}));
        self.send_user(callee, "/hangup", json!({"userId": offer.caller, "reason": "no_answer"}));
        self.reset(&offer.caller, Status::Ended);
    }
}
