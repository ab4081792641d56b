//! The benchmark message: 256 bytes of JSON naming its device, its index
//! for that device, and when it was sent (nanoseconds on the benchmark's
//! own clock, so that latency needs no clock shared with a server).

use std::sync::OnceLock;
use std::time::Instant;

use serde::Deserialize;

/// Size of every message.
pub const SIZE: usize = 256;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the benchmark began.
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// `{"d":device,"i":index,"t":sent_ns,"p":"xxx…"}`, padded to [`SIZE`].
pub fn make(device: usize, index: u64, sent_ns: u64) -> String {
    let head = format!(r#"{{"d":{device},"i":{index},"t":{sent_ns},"p":""#);
    let pad = SIZE.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// The fields a receiver checks.
#[derive(Debug, Deserialize)]
pub struct Stamp {
    pub d: usize,
    pub i: u64,
    pub t: u64,
}

pub fn read(bytes: &[u8]) -> anyhow::Result<Stamp> {
    Ok(serde_json::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_are_256_bytes_of_json() {
        let m = super::make(12, 3456, 789_000_000);
        assert_eq!(m.len(), super::SIZE);
        let s = super::read(m.as_bytes()).unwrap();
        assert_eq!((s.d, s.i, s.t), (12, 3456, 789_000_000));
    }
}
