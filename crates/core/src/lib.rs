//! The shared core of relayhub: what every capability (relay, registry,
//! fleet, signal, rail) builds on.
//!
//! - [`identity`]: licenses (tenants), bearer tokens, app API keys, and the
//!   extractors that authenticate requests;
//! - [`error`]: the one error shape and its table of stable codes;
//! - [`http`]: extractors that answer bad input in that shape;
//! - [`gateway`]: the node's WebSocket gateway (heartbeat, limits, shutdown);
//! - [`metrics`]: the Prometheus registry;
//! - [`alerts`]: rate-limited alerts to an operator's webhook (Telegram);
//! - [`oidc`]: verifying Google (and other OpenID Connect) ID tokens;
//! - [`admission`]: how many connections may wait for a credential;
//! - [`attempts`]: failed attempts per key, counted before the check;
//! - [`password`]: Argon2id, a few at a time;
//! - [`capability`]: the seam every capability plugs into;
//! - [`console`]: the web console's shell, which capabilities add pages to;
//! - [`backend`]: a storage backend's lifecycle and its store traits;
//! - [`bus`]: the after-commit event bus, across nodes too;
//! - [`devices`]: devices, their binding to licenses, their presence;
//! - [`tasks`]: the node's tracked background work;
//! - [`ids`], [`time`], [`secret`], [`store`]: the vocabulary in between.

pub mod admission;
pub mod alerts;
pub mod attempts;
pub mod backend;
pub mod bus;
pub mod capability;
pub mod client;
pub mod console;
pub mod devices;
pub mod error;
pub mod gateway;
pub mod http;
pub mod http_client;
pub mod identity;
pub mod ids;
pub mod license_data;
pub mod metrics;
pub mod oidc;
pub mod operators;
pub mod password;
pub mod rate;
pub mod secret;
pub mod store;
pub mod tasks;
pub mod time;

pub use error::{ApiError, ErrorCode};
pub use store::{StoreError, StoreResult};
