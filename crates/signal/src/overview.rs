//! What an admin sees of a license's signaling (the console's calls page):
//! its calls in progress, and its users connected now, read from the
//! state without changing it.
//!
//! Only signed-in users (`signal.require_user`) belong to a license; users
//! of sockets opened with the app API key belong to none and are never
//! part of any license's overview.

use serde_json::Value;

use crate::state::{State, Status};

/// How many calls, and how many users, an overview lists at most.
pub const MAX_LISTED: usize = 200;

/// One side of a call, or a user online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// The signaling user id (with `signal.require_user`, the fleet user's id).
    pub id: String,
    /// The name it gave (its account's name when signed in), if any.
    pub name: Option<String>,
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Offered; the callee's devices ring.
    Ringing,
    /// Answered; the two are exchanging ICE candidates.
    Connecting,
    /// Connected.
    InCall,
}

impl CallState {
    pub fn label(self) -> &'static str {
        match self {
            CallState::Ringing => "Ringing",
            CallState::Connecting => "Connecting",
            CallState::InCall => "In call",
        }
    }
}

/// A call in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub caller: Party,
    pub callee: Party,
    pub state: CallState,
    /// When it was offered (ringing) or answered (Unix milliseconds);
    /// `None` when the state does not say.
    pub since: Option<i64>,
}

/// A user with a socket open now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Online {
    pub user: Party,
    pub status: Status,
    /// An offer rings it (its status stays as it was until it answers).
    pub called: bool,
    /// Its open sockets (devices).
    pub sockets: usize,
}

/// A license's calls and users online, each list cut at [`MAX_LISTED`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overview {
    /// Oldest first.
    pub calls: Vec<Call>,
    pub calls_total: usize,
    /// By user id.
    pub online: Vec<Online>,
    pub online_total: usize,
}

impl Overview {
    /// License `license`'s part of `state`.
    pub fn of(state: &State, license: i64) -> Self {
        let of_license = |id: &str| state.users.get(id).is_some_and(|u| u.license == Some(license));
        let party = |id: &str| Party { id: id.to_owned(), name: state.users.get(id).and_then(|u| text(&u.name)) };
        let mut calls: Vec<Call> = state
            .waiting
            .iter()
            .filter(|(callee, offer)| of_license(&offer.caller) || of_license(callee))
            .map(|(callee, offer)| Call {
                caller: party(&offer.caller),
                callee: party(callee),
                state: CallState::Ringing,
                since: Some(offer.started),
            })
            .collect();
        for (id, user) in &state.users {
            let Some(peer_id) = user.candidate.as_deref() else { continue };
            let Some(peer) = state.users.get(peer_id) else { continue };
            // A pair once: from its callee, the one that answered (or, for
            // a pair the state does not say that of, from the lesser id).
            let callee = match (user.answered_at, peer.answered_at) {
                (Some(_), _) => true,
                (None, Some(_)) => false,
                (None, None) => id.as_str() < peer_id,
            };
            if !callee || peer.candidate.as_deref() != Some(id) || user.license != Some(license) {
                continue;
            }
            let connected = user.status == Status::InCall || peer.status == Status::InCall;
            calls.push(Call {
                caller: party(peer_id),
                callee: party(id),
                state: if connected { CallState::InCall } else { CallState::Connecting },
                since: user.answered_at,
            });
        }
        calls.sort_by(|a, b| (a.since, &a.caller.id).cmp(&(b.since, &b.caller.id)));
        let mut online: Vec<Online> = state
            .users
            .iter()
            .filter(|(_, u)| !u.sockets.is_empty() && u.license == Some(license))
            .map(|(id, u)| Online {
                user: party(id),
                status: u.status,
                called: state.waiting.contains_key(id),
                sockets: u.sockets.len(),
            })
            .collect();
        online.sort_by(|a, b| a.user.id.cmp(&b.user.id));
        let (calls_total, online_total) = (calls.len(), online.len());
        calls.truncate(MAX_LISTED);
        online.truncate(MAX_LISTED);
        Self { calls, calls_total, online, online_total }
    }
}

/// A name as a person reads it: a non-empty string, or nothing.
fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use relayhub_core::gateway::ConnId;
    use serde_json::json;

    use super::*;
    use crate::protocol::{Frame, parse};
    use crate::state::{Env, Step, Timings};

    fn env(now: i64) -> Env {
        let timings = Timings { ringing: Duration::from_secs(60), grace: Duration::from_secs(30) };
        Env { now, timings, ice_servers: Arc::new(|_| None) }
    }

    /// A frame from socket `conn`, signed for `license`.
    fn send(state: &mut State, conn: u64, license: Option<i64>, frame: serde_json::Value, now: i64) {
        let Ok(Frame::Json(mut inbound)) = parse(&frame.to_string()) else { panic!("not a frame: {frame}") };
        inbound.license = license;
        state.apply(Step::Frame(ConnId(conn), inbound), &env(now)).unwrap();
    }

    fn join(state: &mut State, conn: u64, user: &str, license: Option<i64>) {
        state.apply(Step::Attach(ConnId(conn)), &env(0)).unwrap();
        send(
            state,
            conn,
            license,
            json!({"route": "ADD_USER", "userId": user, "data": {"name": user.to_uppercase()}}),
            0,
        );
    }

    fn offer(state: &mut State, conn: u64, from: &str, to: &str, license: Option<i64>, now: i64) {
        let frame = json!({"route": "OFFER", "userId": from, "data": {"candidateId": to, "sdp": "x"}});
        send(state, conn, license, frame, now);
    }

    #[test]
    fn a_license_sees_its_calls_and_users_only() {
        let mut state = State::new();
        for (conn, user) in [(1, "ann"), (2, "bob"), (3, "cy"), (4, "dee")] {
            join(&mut state, conn, user, Some(7));
        }
        join(&mut state, 5, "eve", Some(8));
        join(&mut state, 6, "fay", Some(8));
        join(&mut state, 9, "anon", None);
        offer(&mut state, 1, "ann", "bob", Some(7), 1_000);
        offer(&mut state, 3, "cy", "dee", Some(7), 2_000);
        send(&mut state, 4, Some(7), json!({"route": "ANSWER", "userId": "dee", "data": {"answer": "y"}}), 3_000);
        offer(&mut state, 5, "eve", "fay", Some(8), 1_500);

        let seen = Overview::of(&state, 7);
        let calls: Vec<_> =
            seen.calls.iter().map(|c| (c.caller.id.as_str(), c.callee.id.as_str(), c.state, c.since)).collect();
        assert_eq!(
            calls,
            [("ann", "bob", CallState::Ringing, Some(1_000)), ("cy", "dee", CallState::Connecting, Some(3_000))]
        );
        assert_eq!(seen.calls[0].caller.name.as_deref(), Some("ANN"));
        let online: Vec<_> = seen.online.iter().map(|o| o.user.id.as_str()).collect();
        assert_eq!(online, ["ann", "bob", "cy", "dee"], "not license 8's, not the API key's");
        let called: Vec<_> = seen.online.iter().filter(|o| o.called).map(|o| o.user.id.as_str()).collect();
        assert_eq!(called, ["bob"]);
        assert_eq!((seen.calls_total, seen.online_total), (2, 4));

        send(&mut state, 3, Some(7), json!({"route": "SWAP_ICE", "userId": "cy", "data": {}}), 4_000);
        let connected = Overview::of(&state, 7);
        assert_eq!(connected.calls[1].state, CallState::InCall);
        assert_eq!(connected.calls[1].since, Some(3_000), "since it was answered");

        send(&mut state, 3, Some(7), json!({"route": "HANGUP", "userId": "cy", "data": {}}), 5_000);
        assert_eq!(Overview::of(&state, 7).calls.len(), 1, "a call hung up is over");
        assert_eq!(Overview::of(&state, 9), Overview::default());
    }

    #[test]
    fn names_are_text_or_nothing() {
        assert_eq!(text(&json!(" Ann ")), Some("Ann".into()));
        assert_eq!(text(&json!("")), None);
        assert_eq!(text(&json!(42)), None);
        assert_eq!(text(&Value::Null), None);
    }
}
