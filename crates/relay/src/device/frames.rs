//! The device WebSocket protocol: JSON text frames with a `type`.

use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::http::parse_json;
use relayhub_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::codes;
use crate::model::QueuedMessage;
use crate::settings::{Document, Settings};

/// The longest `ref` a device may give a record.
pub const MAX_REF_LEN: usize = 200;
/// The most ids one `ack` frame may carry.
pub const MAX_ACK_IDS: usize = 1000;

/// A frame from the device, validated.
#[derive(Debug)]
pub enum Inbound {
    /// `{"type":"ack","id":"…"}` or `{"type":"ack","ids":[…]}`.
    Ack(Vec<Uuid>),
    /// `{"type":"publish","ref":"…","data":…}`.
    Publish { reference: String, data: Box<RawValue> },
    /// `{"type":"ping"}`.
    Ping,
    /// `{"type":"settings","version":N,"settings":{…}}`: the device's settings
    /// as it wants them, based on version N.
    Settings { version: i64, settings: Document },
    /// `{"type":"link_account","id_token":"…"}`: link the settings to the
    /// Google account of the ID token.
    LinkAccount { id_token: String },
    /// `{"type":"restore","id_token":"…"}`: take the settings linked to the
    /// Google account of the ID token.
    Restore { id_token: String },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckFrame {
    #[serde(rename = "type")]
    _type: String,
    id: Option<Uuid>,
    ids: Option<Vec<Uuid>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFrame {
    #[serde(rename = "type")]
    _type: String,
    version: i64,
    settings: Document,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFrame {
    #[serde(rename = "type")]
    _type: String,
    id_token: String,
}

#[derive(Deserialize)]
struct PublishFrame {
    #[serde(rename = "ref")]
    reference: String,
    data: Box<RawValue>,
}

/// Parses one text frame. The error, sent back as an `error` frame, leaves
/// the connection up.
pub fn parse(text: &str) -> Result<Inbound, ApiError> {
    let envelope: Envelope = parse_json(text.as_bytes())?;
    let kind = envelope.kind.ok_or_else(|| ApiError::new(ErrorCode::MISSING_FIELD, "a frame needs a \"type\""))?;
    match kind.as_ref() {
        "ack" => {
            let frame: AckFrame = parse_json(text.as_bytes())?;
            let mut ids = frame.ids.unwrap_or_default();
            ids.extend(frame.id);
            if ids.is_empty() {
                return Err(ApiError::new(ErrorCode::MISSING_FIELD, "an ack needs \"id\" or \"ids\""));
            }
            if ids.len() > MAX_ACK_IDS {
                return Err(ApiError::invalid_field(format!("an ack carries at most {MAX_ACK_IDS} ids")));
            }
            Ok(Inbound::Ack(ids))
        }
        "publish" => {
            let frame: PublishFrame = parse_json(text.as_bytes())?;
            if frame.reference.is_empty() || frame.reference.len() > MAX_REF_LEN {
                return Err(ApiError::invalid_field(format!("ref must be 1-{MAX_REF_LEN} bytes")));
            }
            Ok(Inbound::Publish { reference: frame.reference, data: frame.data })
        }
        "ping" => Ok(Inbound::Ping),
        "settings" => {
            let frame: SettingsFrame = parse_json(text.as_bytes())?;
            Ok(Inbound::Settings { version: frame.version, settings: frame.settings })
        }
        "link_account" => {
            let frame: TokenFrame = parse_json(text.as_bytes())?;
            Ok(Inbound::LinkAccount { id_token: frame.id_token })
        }
        "restore" => {
            let frame: TokenFrame = parse_json(text.as_bytes())?;
            Ok(Inbound::Restore { id_token: frame.id_token })
        }
        other => Err(ApiError::new(
            ErrorCode::UNKNOWN_FRAME,
            format!("unknown frame type {other:?}; expected ack, publish, ping, settings, link_account or restore"),
        )),
    }
}

/// `{"type":"hello",…}`: the first frame of every connection.
#[derive(Serialize)]
pub struct Hello<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub device_id: &'a str,
    pub license: &'a str,
    pub pending: u64,
    /// The device's own secret, on the connection that got it (once):
    /// present it as `X-Device-Secret` from now on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_secret: Option<&'a str>,
}

#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Uuid,
    seq: i64,
    time: Timestamp,
    data: &'a RawValue,
}

/// `{"type":"message","id":…,"seq":…,"time":…,"data":…}`.
pub fn message(m: &QueuedMessage) -> String {
    to_text(&MessageFrame { kind: "message", id: m.id, seq: m.seq, time: m.created_at, data: &m.data })
}

#[derive(Serialize)]
struct PublishedFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "ref")]
    reference: &'a str,
    id: Uuid,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

/// `{"type":"published","ref":…,"id":…}`, with `"duplicate":true` when the
/// ref was stored before.
pub fn published(reference: &str, id: Uuid, duplicate: bool) -> String {
    to_text(&PublishedFrame { kind: "published", reference, id, duplicate })
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    message: &'a str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ids: &'a [Uuid],
}

/// `{"type":"error","code":…,"message":…}`, naming the record (`ref`) or
/// messages (`ids`) it concerns, if any.
pub fn error(err: &ApiError, reference: Option<&str>, ids: &[Uuid]) -> String {
    to_text(&ErrorFrame { kind: "error", code: err.code.as_str(), message: &err.message, reference, ids })
}

#[derive(Serialize)]
struct SettingsOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    version: i64,
    settings: &'a Document,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    merged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    restored_from: Option<&'a str>,
}

/// `{"type":"settings","version":N,"settings":{…}}`, with `"merged":true`
/// when the device's write was merged with newer changes, and
/// `"restored_from":"google:…"` after a restore.
pub fn settings(current: &Settings, merged: bool, restored_from: Option<&str>) -> String {
    to_text(&SettingsOut {
        kind: "settings",
        version: current.version,
        settings: &current.settings,
        merged,
        restored_from,
    })
}

#[derive(Serialize)]
struct ConflictOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    message: &'a str,
    version: i64,
    settings: &'a Document,
    conflicts: &'a [String],
}

/// The `error` frame of a refused settings write: the current document and
/// the conflicting paths.
pub fn settings_conflict(current: &Settings, paths: &[String], message: &str) -> String {
    to_text(&ConflictOut {
        kind: "error",
        code: codes::SETTINGS_CONFLICT.as_str(),
        message,
        version: current.version,
        settings: &current.settings,
        conflicts: paths,
    })
}

/// `{"type":"linked","account":"google:…"}`.
pub fn linked(account: &str) -> String {
    to_text(&serde_json::json!({"type": "linked", "account": account}))
}

/// `{"type":"pong"}`.
pub const PONG: &str = r#"{"type":"pong"}"#;

pub fn to_text(frame: &impl Serialize) -> String {
    // Serialising these plain structs cannot fail.
    serde_json::to_string(frame).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_or_explain() {
        let id = Uuid::now_v7();
        assert!(matches!(parse(&format!(r#"{{"type":"ack","id":"{id}"}}"#)), Ok(Inbound::Ack(ids)) if ids == vec![id]));
        assert!(matches!(parse(r#"{"type":"ping"}"#), Ok(Inbound::Ping)));
        let code = |text: &str| parse(text).unwrap_err().code;
        assert_eq!(code("{"), ErrorCode::MALFORMED_JSON);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UNKNOWN_FRAME);
        assert_eq!(code(r#"{"id":1}"#), ErrorCode::MISSING_FIELD);
        assert_eq!(code(r#"{"type":"ack"}"#), ErrorCode::MISSING_FIELD);
        assert_eq!(code(r#"{"type":"ack","id":"nope"}"#), ErrorCode::INVALID_FIELD);
        assert_eq!(code(r#"{"type":"publish","ref":"","data":1}"#), ErrorCode::INVALID_FIELD);
        assert_eq!(code(r#"{"type":"publish","ref":"a"}"#), ErrorCode::INVALID_FIELD);
    }
}
