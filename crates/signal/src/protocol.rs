//! Seed 003's frames: the text `PING` (answered `PONG`), and JSON
//! `{"route":"ROUTE","userId":"…","data":{…}}` from clients,
//! `{"route":"ROUTE","data":{…}}` from the server.

use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::http::parse_json;
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
    let route =
        Route::parse(&name).ok_or_else(|| ApiError::new(ErrorCode::UnknownFrame, format!("unknown route {name:?}")))?;
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
    Ok(Frame::Json(Inbound { route, user, data }))
}

pub fn missing(field: &str) -> ApiError {
    ApiError::new(ErrorCode::MissingField, format!("{field} is required"))
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

    #[test]
    fn frames_parse_or_explain() {
        assert!(matches!(parse("PING"), Ok(Frame::Ping)));
        let Ok(Frame::Json(f)) = parse(r#"{"route":"OFFER","userId":"a","data":{"candidateId":"b","sdp":"v=0"}}"#)
        else {
            panic!()
        };
        assert_eq!((f.route, f.user.as_str()), (Route::Offer, "a"));
        let code = |t: &str| parse(t).err().unwrap().code;
        assert_eq!(code("nope"), ErrorCode::MalformedJson);
        assert_eq!(code(r#"{"route":"DANCE","userId":"a"}"#), ErrorCode::UnknownFrame);
        assert_eq!(code(r#"{"userId":"a"}"#), ErrorCode::MissingField);
        assert_eq!(code(r#"{"route":"OFFER"}"#), ErrorCode::MissingField);
        assert_eq!(code(r#"{"route":"OFFER","userId":"a","data":[1]}"#), ErrorCode::InvalidField);
    }
}
