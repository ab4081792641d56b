//! relayhub's integration tests: one binary (link time), real servers on
//! 127.0.0.1:0 with their own temporary databases, real HTTP and WebSocket
//! clients, and `relayhub` child processes where a crash is the point.

mod admin_api;
mod backup;
mod bad_input;
mod caller;
mod cluster;
mod console;
mod console_pages;
mod contract;
mod contract_operators;
mod contract_rail;
mod delivery;
mod device_credentials;
mod durability;
mod face;
mod field;
mod fleet;
mod hardening;
mod helpers;
mod inbox;
mod ops;
mod partitions;
mod private_pg;
mod process;
mod queueing;
mod rail;
mod rail_retries;
mod readme;
mod registry;
mod schema_driven;
mod security_edges;
mod security_http;
mod security_signal;
mod security_signin;
mod settings;
mod signal;
mod signal_nodes;
mod signal_users;
mod telemetry;
mod telemetry_quotas;
mod tenancy;
mod upgrade;
mod walkthrough;
mod webrtc;
