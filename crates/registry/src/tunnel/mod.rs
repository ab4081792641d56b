//! Instances behind NAT: a WebSocket from the instance to `/ws/instance`
//! carries the proxy's requests to it and their streamed answers back,
//! several at once. The frames are in docs/protocol/tunnel.md.

pub mod client;
pub mod frames;
pub mod hub;
