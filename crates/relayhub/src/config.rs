//! Configuration, layered: built-in defaults → TOML file (`--config`) →
//! environment (`RELAYHUB_…`, nested keys with `__`, e.g.
//! `RELAYHUB_RELAY__QUEUE_LIMIT=5000`) → command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use relayhub_core::alerts::AlertConfig;
use relayhub_core::gateway::GatewayConfig;
use relayhub_relay::RelayConfig;
use relayhub_signal::SignalConfig;
use serde::{Deserialize, Serialize};

/// Environment variables read by clap or the logger rather than figment.
const OTHER_ENV: &[&str] = &["RELAYHUB_CONFIG", "RELAYHUB_LOG"];

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Everything `relayhub serve` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the embedded database (`relayhub.db`).
    pub data: PathBuf,
    /// Database URL (`sqlite://PATH` or `postgres://…`); overrides `data`.
    pub database: Option<String>,
    /// PostgreSQL connections this node opens at most.
    pub pool_size: u32,
    /// Largest request body, in bytes (413 beyond).
    pub body_limit: usize,
    pub log_format: LogFormat,
    pub gateway: GatewayConfig,
    pub relay: RelayConfig,
    pub signal: SignalConfig,
    pub alerts: AlertConfig,
    pub google: GoogleConfig,
}

/// Google sign-in, for linking device settings to an account and restoring
/// them on a new device (`[google]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GoogleConfig {
    /// The app's OAuth client id: ID tokens must be issued for it (`aud`).
    /// Link and restore are refused (`not_configured`) without it.
    pub client_id: Option<String>,
    /// Google's signing keys: a JWKS file path or URL
    /// [default: https://www.googleapis.com/oauth2/v3/certs].
    pub jwks: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: PathBuf::from("relayhub-data"),
            database: None,
            pool_size: 16,
            body_limit: 1024 * 1024,
            log_format: LogFormat::Text,
            gateway: GatewayConfig::default(),
            relay: RelayConfig::default(),
            signal: SignalConfig::default(),
            alerts: AlertConfig::default(),
            google: GoogleConfig::default(),
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// `{"open": true}` for `--signal-open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<serde_json::Value>,
}

/// Where the data lives, resolved from `data` and `database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Config {
    /// Loads the layers. Unknown keys in the file are errors; unknown
    /// `RELAYHUB_…` variables are returned as warnings (a typo there would
    /// otherwise be silently ignored).
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<(Config, Vec<String>)> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                bail!("configuration file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        // Only variables that name a setting reach figment: a stray
        // RELAYHUB_… variable is a warning, not a failed start.
        let known = known_keys();
        let config: Config = figment
            .merge(
                Env::prefixed("RELAYHUB_").split("__").filter(move |k| known.iter().any(|known| k == known.as_str())),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .context("invalid configuration")?;
        Ok((config, unknown_env_vars()))
    }

    /// The database to use.
    pub fn database_url(&self) -> anyhow::Result<DatabaseUrl> {
        match self.database.as_deref() {
            None => Ok(DatabaseUrl::Sqlite(self.data.join("relayhub.db"))),
            Some(url) => parse_database_url(url),
        }
    }
}

fn parse_database_url(url: &str) -> anyhow::Result<DatabaseUrl> {
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        if path.is_empty() {
            bail!("sqlite URL without a path: use sqlite://relayhub-data/relayhub.db");
        }
        return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DatabaseUrl::Postgres(url.to_owned()));
    }
    bail!("unsupported database URL (expected sqlite://PATH or postgres://…)")
}

/// Every setting's key in figment's dotted form (`relay.queue_limit`).
fn known_keys() -> Vec<String> {
    fn collect(value: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = value {
            for (key, value) in map {
                let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                out.push(name.clone());
                collect(value, &name, out);
            }
        }
    }
    let mut out = Vec::new();
    collect(&serde_json::to_value(Config::default()).unwrap_or_default(), "", &mut out);
    out
}

/// The setting a variable names, without its `RELAYHUB_` prefix:
/// `RELAY__QUEUE_LIMIT` → `relay.queue_limit`. The Google settings also go
/// by the single-underscore names operators expect.
fn env_key(name: &str) -> String {
    match name.to_lowercase().as_str() {
        "google_client_id" => "google.client_id".into(),
        "google_jwks" => "google.jwks".into(),
        other => other.replace("__", "."),
    }
}

/// `RELAYHUB_…` variables that name no setting.
fn unknown_env_vars() -> Vec<String> {
    let known = known_keys();
    std::env::vars()
        .map(|(var, _)| var)
        .filter(|var| !OTHER_ENV.contains(&var.as_str()))
        .filter(|var| var.strip_prefix("RELAYHUB_").is_some_and(|name| !known.contains(&env_key(name))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(parse_database_url("sqlite:///var/lib/x.db").unwrap(), DatabaseUrl::Sqlite("/var/lib/x.db".into()));
        assert_eq!(parse_database_url("sqlite://rel.db").unwrap(), DatabaseUrl::Sqlite("rel.db".into()));
        assert!(matches!(parse_database_url("postgres://u@h/db").unwrap(), DatabaseUrl::Postgres(_)));
        assert!(parse_database_url("mongodb://x").is_err());
    }

    #[test]
    fn nested_env_names_are_known() {
        let known = known_keys();
        for var in ["LISTEN", "RELAY__QUEUE_LIMIT", "GATEWAY__IDLE_TIMEOUT", "GOOGLE_CLIENT_ID", "GOOGLE__JWKS"] {
            assert!(known.contains(&env_key(var)), "{var}");
        }
        assert!(!known.contains(&env_key("RELAY__QUEUE_LIMT")));
    }
}
