//! relayhub's integration tests: one binary (link time), real servers on
//! 127.0.0.1:0 with their own temporary databases, real HTTP and WebSocket
//! clients.

mod delivery;
mod helpers;
