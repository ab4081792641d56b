//! ICE candidates, stream ids and renegotiation between the two users of a
//! call.
//!
//! ICE candidates are held on the server until the pair exists and
//! `SWAP_ICE` hands each side the other's list, in the order they arrived;
//! candidates that arrive after the swap (trickle ICE) go to the peer at
//! once.

use relayhub_core::error::ApiError;
use serde_json::{Value, json};

use crate::codes;
use crate::protocol::Inbound;
use crate::state::{Effects, State, Status};

fn no_call() -> ApiError {
    ApiError::new(codes::NO_CALL, "not in a call")
}

impl State {
    /// The user's peer, if both name each other.
    pub(crate) fn peer_of(&self, user: &str) -> Option<String> {
        let peer = self.users.get(user)?.candidate.clone()?;
        let mutual = self.users.get(&peer)?.candidate.as_deref() == Some(user);
        mutual.then_some(peer)
    }

    pub(crate) fn add_ice(&mut self, f: &Inbound) -> Result<Effects, ApiError> {
        let Value::Array(candidates) = f.field("iceParams")? else {
            return Err(ApiError::invalid_field("data.iceParams must be a list"));
        };
        let peer = self.peer_of(&f.user);
        let Some(user) = self.users.get_mut(&f.user) else { return Ok(Effects::default()) };
        user.ice.extend(candidates.iter().cloned());
        if let (Some(peer), Status::InCall) = (peer, user.status) {
            let fresh: Vec<Value> = user.ice[user.ice_sent..].to_vec();
            user.ice_sent = user.ice.len();
            self.send_call(&peer, "/swapIce", json!({"iceCandidates": fresh, "userId": f.user}));
        }
        Ok(Effects::default())
    }

    pub(crate) fn swap_ice(&mut self, f: &Inbound) -> Result<Effects, ApiError> {
        let peer = self.peer_of(&f.user).ok_or_else(no_call)?;
        let take = |state: &mut State, who: &str| {
            let u = state.users.get_mut(who)?;
            let fresh: Vec<Value> = u.ice[u.ice_sent..].to_vec();
            u.ice_sent = u.ice.len();
            u.status = Status::InCall;
            Some(fresh)
        };
        let from_user = take(self, &f.user).unwrap_or_default();
        let from_peer = take(self, &peer).unwrap_or_default();
        self.send_call(&f.user, "/swapIce", json!({"iceCandidates": from_peer, "userId": peer}));
        self.send_call(&peer, "/swapIce", json!({"iceCandidates": from_user, "userId": f.user}));
        Ok(Effects::default())
    }

    pub(crate) fn set_stream_ids(&mut self, f: &Inbound) -> Result<Effects, ApiError> {
        let streams = f.field("streamIds")?.clone();
        if let Some(u) = self.users.get_mut(&f.user) {
            u.stream_ids = streams.clone();
        }
        if let Some(peer) = self.peer_of(&f.user) {
            self.send_call(&peer, "/remoteStreamsId", json!({"streamIds": streams, "userId": f.user}));
        }
        Ok(Effects::default())
    }

    /// Passes a renegotiation or media change to the peer: the required
    /// `field` and anything else the client sent.
    pub(crate) fn relay_to_peer(&mut self, f: &Inbound, field: &str, route: &str) -> Result<Effects, ApiError> {
        f.field(field)?;
        let peer = self.peer_of(&f.user).ok_or_else(no_call)?;
        let mut data = Value::Object(f.data.clone());
        data["userId"] = json!(f.user);
        self.send_call(&peer, route, data);
        Ok(Effects::default())
    }
}
