//! The relayhub server: wires the capabilities (relay, signal, …) over the shared
//! core and a storage backend, and provides the command line.
//!
//! [`Server`] is the entry point for embedding and tests: build it on a
//! bound listener, run it with a shutdown future.

pub mod accept;
pub mod admin;
pub mod backup;
pub mod capabilities;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod logging;
pub mod openapi;
pub mod ops;
pub mod server;
pub mod stores;

pub use config::Config;
pub use server::Server;
