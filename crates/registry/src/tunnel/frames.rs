//! The tunnel's frames (docs/protocol/tunnel.md): JSON text frames for
//! control, binary frames for body bytes, several requests at once, each
//! direction of each request flow-controlled by a window of bytes.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Bytes either side may send of one body before the other grants more.
pub const WINDOW: usize = 256 * 1024;
/// The most body bytes in one binary frame.
pub const MAX_CHUNK: usize = 64 * 1024;

/// A request or response header, as name and value (repeats allowed).
pub type Header = (String, String);

/// A control frame, in either direction unless noted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Frame {
    /// Server → instance, once, first: the tunnel is open.
    Ready { instance_id: String, window: usize },
    /// Server → instance: a new request. `body`: whether it has a body (of
    /// `content-length`, or until `end` when no length is given); the body
    /// follows as data frames, then `end` either way.
    Request {
        id: u32,
        method: String,
        path: String,
        headers: Vec<Header>,
        #[serde(default)]
        body: bool,
    },
    /// Instance → server: the response's head. Its body follows as data
    /// frames and `end`.
    Response { id: u32, status: u16, headers: Vec<Header> },
    /// The sender's body of request `id` is complete.
    End { id: u32 },
    /// The sender may send `bytes` more body bytes of request `id`.
    Window { id: u32, bytes: usize },
    /// Request `id` is over: the server's caller left or timed out, or the
    /// instance could not reach its local server.
    Cancel {
        id: u32,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
}

impl Frame {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A binary frame: the request id (4 bytes, big-endian), then body bytes.
pub fn data(id: u32, chunk: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(4 + chunk.len());
    frame.put_u32(id);
    frame.put_slice(chunk);
    frame.freeze()
}

/// A binary frame's request id and body bytes.
pub fn parse_data(mut frame: Bytes) -> Option<(u32, Bytes)> {
    if frame.len() < 4 {
        return None;
    }
    let body = frame.split_off(4);
    let id = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    Some((id, body))
}

/// Splits a body chunk into pieces of at most [`MAX_CHUNK`].
pub fn pieces(chunk: Bytes) -> impl Iterator<Item = Bytes> {
    let mut rest = chunk;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = rest.len().min(MAX_CHUNK);
        Some(rest.split_to(n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_as_written() {
        let frame = Frame::Request {
            id: 7,
            method: "GET".into(),
            path: "/a?b=1".into(),
            headers: vec![("accept".into(), "*/*".into())],
            body: false,
        };
        let text = frame.to_text();
        assert!(text.starts_with(r#"{"type":"request","id":7"#), "{text}");
        assert_eq!(serde_json::from_str::<Frame>(&text).unwrap(), frame);
        let cancel: Frame = serde_json::from_str(r#"{"type":"cancel","id":3}"#).unwrap();
        assert_eq!(cancel, Frame::Cancel { id: 3, reason: String::new() });
        assert_eq!(parse_data(data(9, b"abc")), Some((9, Bytes::from_static(b"abc"))));
        assert_eq!(parse_data(Bytes::from_static(b"ab")), None);
        let sizes: Vec<usize> = pieces(Bytes::from(vec![0u8; MAX_CHUNK * 2 + 1])).map(|p| p.len()).collect();
        assert_eq!(sizes, vec![MAX_CHUNK, MAX_CHUNK, 1]);
    }
}
