//! Seed 003's frames: the text `PING` (answered `PONG`), and JSON
//! `{"route":"ROUTE","userId":"…","data":{…}}` from clients,
//! `{"route":"ROUTE","data":{…}}` from the server.

use crate::codes;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::http::parse_json;
use relayhub_core::identity::Account;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The longest user id accepted.
const MAX_USER_ID: usize = 200;

/// What a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    AddUser,
    Reconnect,
    Offer,
    Answer,
    Decline,
    AddIce,
    SwapIce,
    SetRemoteStreamId,
    UpdateOffer,
    UpdateAnswer,
    MediaUpdate,
    Hangup,
}

impl Route {
    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "ADD_USER" => Route::AddUser,
            "RECONNECT" => Route::Reconnect,
            "OFFER" => Route::Offer,
            "ANSWER" => Route::Answer,
            "DECLINE" => Route::Decline,
            "ADD_ICE" => Route::AddIce,
            "SWAP_ICE" => Route::SwapIce,
            "SET_REMOTE_STREAM_ID" => Route::SetRemoteStreamId,
            "UPDATE_OFFER" => Route::UpdateOffer,
            "UPDATE_ANSWER" => Route::UpdateAnswer,
            "MEDIA_UPDATE" => Route::MediaUpdate,
            "HANGUP" => Route::Hangup,
            _ => return None,
        })
    }
}

/// A client frame, validated.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub route: Route,
    pub user: String,
    pub data: Map<String, Value>,
    /// The license of the signed-in user who sent it (`signal.require_user`),
    /// set by the server from the socket's access token, never from the
    /// wire; `None` on sockets opened with the app API key.
    pub license: Option<i64>,
}

#[derive(Deserialize)]
struct Raw {
    route: Option<String>,
    #[serde(rename = "userId")]
    user: Option<Value>,
    data: Option<Value>,
}

/// A frame is `PING` or JSON.
pub enum Frame {
    Ping,
    Json(Inbound),
}

pub fn parse(text: &str) -> Result<Frame, ApiError> {
    if text.trim() == "PING" {
        return Ok(Frame::Ping);
    }
    let raw: Raw = parse_json(text.as_bytes())?;
    let name = raw.route.ok_or_else(|| missing("route"))?;
    let route = Route::parse(&name)
        .ok_or_else(|| ApiError::new(ErrorCode::UNKNOWN_FRAME, format!("unknown route {name:?}")))?;
    let user = match raw.user {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_USER_ID => s,
        // Numeric ids are common in older clients; they name the same user.
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(ApiError::invalid_field(format!("userId must be 1-{MAX_USER_ID} characters"))),
        None => return Err(missing("userId")),
    };
    let data = match raw.data {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ApiError::invalid_field("data must be an object")),
    };
    Ok(Frame::Json(Inbound { route, user, data, license: None }))
}

/// The most bytes `name` and `device` of an `ADD_USER` may take (as JSON).
pub const MAX_PROFILE_FIELD: usize = 512;
/// The most bytes of `photo`: a link (`https://…`, or a path as seed 003's
/// clients send) or a small `data:image/…` URI.
pub const MAX_PHOTO: usize = 8 * 1024;

/// Whether a photo names a scheme other than `http(s)` or `data:image/`
/// (`javascript:` and the like, which a console or a peer's app must never
/// be handed).
fn foreign_scheme(photo: &str) -> bool {
    let Some((scheme, _)) = photo.split_once(':') else { return false };
    let is_scheme = !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    is_scheme
        && !scheme.eq_ignore_ascii_case("http")
        && !scheme.eq_ignore_ascii_case("https")
        && !photo.get(..11).is_some_and(|p| p.eq_ignore_ascii_case("data:image/"))
}

/// What an `ADD_USER` may keep about its user for as long as the user is
/// known (its reconnect grace included): small fields, a photo that is a
/// link or a thumbnail. Past a bound the frame has no effect.
pub fn check_profile(frame: &Inbound) -> Result<(), ApiError> {
    for field in ["name", "device"] {
        let size = frame.data.get(field).map_or(0, |v| v.to_string().len());
        if size > MAX_PROFILE_FIELD {
            return Err(ApiError::invalid_field(format!(
                "data.{field} is {size} bytes; at most {MAX_PROFILE_FIELD} are kept"
            )));
        }
    }
    match frame.data.get("photo") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(photo)) if photo.len() > MAX_PHOTO => Err(ApiError::invalid_field(format!(
            "data.photo is {} bytes; at most {MAX_PHOTO}: send a URL or a small thumbnail",
            photo.len()
        ))),
        Some(Value::String(photo)) if !foreign_scheme(photo) => Ok(()),
        Some(_) => {
            Err(ApiError::invalid_field("data.photo must be a link (http, https or a path) or a data:image/ URI"))
        }
    }
}

/// Counts the users one socket has said it is: at most `max` (0: no
/// bound), so that one socket cannot fill the node with users, each kept
/// through its reconnect grace.
pub fn admit_user(seen: &mut std::collections::HashSet<String>, frame: &Inbound, max: usize) -> Result<(), ApiError> {
    if !matches!(frame.route, Route::AddUser | Route::Reconnect) {
        return Ok(());
    }
    check_profile(frame)?;
    if frame.route == Route::Reconnect {
        return Ok(());
    }
    if max > 0 && !seen.contains(&frame.user) && seen.len() >= max {
        return Err(ApiError::new(
            codes::TOO_MANY_USERS,
            format!("this socket has added {max} users already (signal.max_users_per_socket)"),
        ));
    }
    seen.insert(frame.user.clone());
    Ok(())
}

pub fn missing(field: &str) -> ApiError {
    ApiError::new(ErrorCode::MISSING_FIELD, format!("{field} is required"))
}

impl Inbound {
    /// A required field of `data`.
    pub fn field(&self, name: &str) -> Result<&Value, ApiError> {
        self.data.get(name).filter(|v| !v.is_null()).ok_or_else(|| missing(&format!("data.{name}")))
    }

    /// A field of `data`, or null.
    pub fn get(&self, name: &str) -> Value {
        self.data.get(name).cloned().unwrap_or(Value::Null)
    }

    /// `data` without the named fields: passed through to the peer.
    pub fn rest(&self, known: &[&str]) -> Map<String, Value> {
        self.data.iter().filter(|(k, _)| !known.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// A frame from a signed-in user's socket, as the state machine takes it:
/// its `userId` must be the user's id (else `user_mismatch`, and the frame
/// has no effect); it carries the user's license, and `ADD_USER` and
/// `RECONNECT` the name on the account rather than the one sent.
pub fn signed(mut frame: Inbound, account: &Account) -> Result<Inbound, ApiError> {
    if frame.user != account.id.to_string() {
        return Err(ApiError::new(
            codes::USER_MISMATCH,
            format!("this socket is signed in as user {}, not {:?}", account.id, frame.user),
        ));
    }
    frame.license = Some(account.license.0);
    if matches!(frame.route, Route::AddUser | Route::Reconnect) {
        frame.data.insert("name".to_owned(), Value::String(account.name.clone()));
    }
    Ok(frame)
}

/// `{"route":…,"data":…}`.
pub fn frame(route: &str, data: Value) -> String {
    json!({"route": route, "data": data}).to_string()
}

/// `{"route":"error","data":{"code":…,"message":…}}`.
pub fn error(err: &ApiError) -> String {
    frame("error", json!({"code": err.code.as_str(), "message": err.message}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_user(user: &str, data: Value) -> Inbound {
        let text = json!({"route": "ADD_USER", "userId": user, "data": data}).to_string();
        match parse(&text).unwrap() {
            Frame::Json(frame) => frame,
            Frame::Ping => unreachable!(),
        }
    }

    #[test]
    fn add_user_keeps_small_fields_only() {
        assert!(check_profile(&add_user("a", json!({"name": "Ann", "photo": "https://x/a.png"}))).is_ok());
        assert!(check_profile(&add_user("a", json!({"photo": "data:image/png;base64,AAAA"}))).is_ok());
        let huge = add_user("a", json!({"photo": format!("data:image/png;base64,{}", "A".repeat(900_000))}));
        assert!(check_profile(&huge).unwrap_err().message.contains("at most 8192"));
        assert!(check_profile(&add_user("a", json!({"photo": "p.png"}))).is_ok(), "a path, as seed 003 sends");
        assert!(check_profile(&add_user("a", json!({"photo": "javascript:alert(1)"}))).is_err());
        assert!(check_profile(&add_user("a", json!({"photo": "data:text/html,<b>"}))).is_err());
        assert!(check_profile(&add_user("a", json!({"photo": 42}))).is_err());
        assert!(check_profile(&add_user("a", json!({"name": "n".repeat(600)}))).is_err());
        assert!(check_profile(&add_user("a", json!({"device": {"model": "m".repeat(600)}}))).is_err());
    }

    #[test]
    fn a_socket_adds_a_bounded_number_of_users() {
        let mut seen = std::collections::HashSet::new();
        for user in ["a", "b", "a"] {
            assert!(admit_user(&mut seen, &add_user(user, json!({})), 2).is_ok(), "{user}");
        }
        assert_eq!(admit_user(&mut seen, &add_user("c", json!({})), 2).unwrap_err().code, codes::TOO_MANY_USERS);
    }

    #[test]
    fn frames_parse_or_explain() {
        assert!(matches!(parse("PING"), Ok(Frame::Ping)));
        let Ok(Frame::Json(f)) = parse(r#"{"route":"OFFER","userId":"a","data":{"candidateId":"b","sdp":"v=0"}}"#)
        else {
            panic!()
        };
        assert_eq!((f.route, f.user.as_str()), (Route::Offer, "a"));
        let code = |t: &str| parse(t).err().unwrap().code;
        assert_eq!(code("nope"), ErrorCode::MALFORMED_JSON);
        assert_eq!(code(r#"{"route":"DANCE","userId":"a"}"#), ErrorCode::UNKNOWN_FRAME);
        assert_eq!(code(r#"{"userId":"a"}"#), ErrorCode::MISSING_FIELD);
        assert_eq!(code(r#"{"route":"OFFER"}"#), ErrorCode::MISSING_FIELD);
        assert_eq!(code(r#"{"route":"OFFER","userId":"a","data":[1]}"#), ErrorCode::INVALID_FIELD);
    }

    #[test]
    fn a_signed_in_socket_speaks_only_for_its_user() {
        let account = Account {
            id: 42,
            license: relayhub_core::ids::LicensePk(3),
            name: "Ann Example".into(),
            admin: false,
            expires_at: relayhub_core::time::Timestamp::from_millis(0),
        };
        let json = |text: &str| match parse(text) {
            Ok(Frame::Json(f)) => f,
            _ => panic!("{text}"),
        };
        let add = signed(json(r#"{"route":"ADD_USER","userId":42,"data":{"name":"Mallory"}}"#), &account).unwrap();
        assert_eq!((add.license, add.data["name"].as_str()), (Some(3), Some("Ann Example")), "the account's name");
        let offer = signed(json(r#"{"route":"OFFER","userId":"42","data":{"name":"x"}}"#), &account).unwrap();
        assert_eq!(offer.data["name"], "x", "other frames' data is theirs");
        let other = signed(json(r#"{"route":"ANSWER","userId":"43","data":{}}"#), &account).unwrap_err();
        assert_eq!(other.code, codes::USER_MISMATCH);
        assert_eq!(json(r#"{"route":"HANGUP","userId":"43"}"#).license, None, "never from the wire");
    }
}
