//! Configuration, layered: built-in defaults → TOML file (`--config`) →
//! environment (`RELAYHUB_…`, nested keys with `__`, e.g.
//! `RELAYHUB_RELAY__QUEUE_LIMIT=5000`) → command-line flags.
//!
//! The core's settings are fields here; each capability's are a section of
//! its own (`[relay]`, `[signal]`, …), its defaults and its checks coming
//! from the capability itself ([`relayhub_core::capability::Module`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use relayhub_core::alerts::AlertConfig;
use relayhub_core::capability::{Module, Section};
use relayhub_core::gateway::GatewayConfig;
use serde::{Deserialize, Serialize};

use crate::accept::HttpConfig;
use crate::capabilities;

/// Environment variables read by clap, the logger or the tests rather than
/// the configuration.
const OTHER_ENV: &[&str] = &["RELAYHUB_CONFIG", "RELAYHUB_LOG", "RELAYHUB_TEST_POSTGRES", "RELAYHUB_TEST_REQUIRE_ALL"];

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
#[serde(default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the embedded database (`relayhub.db`).
    pub data: PathBuf,
    /// Database URL (`sqlite://PATH` or `postgres://…`); overrides `data`.
    pub database: Option<String>,
    /// PostgreSQL connections this node opens at most.
    pub pool_size: u32,
    /// Files the embedded database spreads the relay's data over, each
    /// with its own writer thread; new licenses go round robin, existing
    /// ones stay where they are. 0: half the cores, at most 8.
    pub partitions: usize,
    /// Largest request body, in bytes (413 beyond).
    pub body_limit: usize,
    pub log_format: LogFormat,
    pub http: HttpConfig,
    pub gateway: GatewayConfig,
    pub alerts: AlertConfig,
    pub google: GoogleConfig,
    /// Each capability's section, by its name; defaults where absent.
    #[serde(flatten)]
    pub sections: BTreeMap<String, serde_json::Value>,
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
            partitions: 0,
            body_limit: 1024 * 1024,
            log_format: LogFormat::Text,
            http: HttpConfig::default(),
            gateway: GatewayConfig::default(),
            alerts: AlertConfig::default(),
            google: GoogleConfig::default(),
            sections: BTreeMap::new(),
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
    pub partitions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// `--signal-open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<relayhub_signal::SignalFlags>,
}

/// Where the data lives, resolved from `data` and `database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Config {
    /// Loads the layers from the process's environment. Unknown keys in the
    /// file are errors; unknown `RELAYHUB_…` variables are returned as
    /// warnings (a typo there would otherwise be silently ignored).
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<(Config, Vec<String>)> {
        Self::load_with(file, overrides, std::env::vars())
    }

    /// Loads the layers with `env` as the environment.
    pub fn load_with(
        file: Option<&Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<(Config, Vec<String>)> {
        let modules = capabilities::modules();
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        for module in &modules {
            figment = figment.merge(Serialized::default(module.name(), module.default_config()));
        }
        if let Some(file) = file {
            if !file.exists() {
                bail!("configuration file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        let known = known_keys(&modules);
        let mut unknown = Vec::new();
        for (var, raw) in env {
            let Some(name) = var.strip_prefix("RELAYHUB_") else { continue };
            let key = env_key(name);
            if known.contains(&key) {
                let value: figment::value::Value = raw.parse().unwrap_or_else(|never| match never {});
                figment = figment.merge(Serialized::default(&key, value));
            } else if !OTHER_ENV.contains(&var.as_str()) {
                unknown.push(var);
            }
        }
        let config: Config =
            figment.merge(Serialized::defaults(overrides)).extract().context("invalid configuration")?;
        config.check(&modules)?;
        Ok((config, unknown))
    }

    /// Refuses sections no capability owns and sections a capability
    /// refuses (unknown keys, bad values).
    fn check(&self, modules: &[Module]) -> anyhow::Result<()> {
        if self.partitions > relayhub_sqlite::MAX_PARTITIONS {
            bail!(
                "invalid configuration: partitions is {}; at most {}",
                self.partitions,
                relayhub_sqlite::MAX_PARTITIONS
            );
        }
        for (name, section) in &self.sections {
            let Some(module) = modules.iter().find(|m| m.name() == name) else {
                bail!("invalid configuration: unknown key `{name}`");
            };
            module.check_config(section.clone()).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        }
        Ok(())
    }

    /// A capability's section, its defaults where not set.
    pub fn section<T: Section>(&self) -> T {
        self.sections.get(T::NAME).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
    }

    /// Changes a capability's section (tests, embedding).
    pub fn edit<T: Section>(&mut self, change: impl FnOnce(&mut T)) {
        let mut section: T = self.section();
        change(&mut section);
        self.sections.insert(T::NAME.to_owned(), serde_json::to_value(section).unwrap_or_default());
    }

    /// How to open the database (`partitions` 0 resolved).
    pub fn store_options(&self) -> crate::stores::StoreOptions {
        let partitions = match self.partitions {
            0 => relayhub_sqlite::default_partitions(),
            n => n,
        };
        crate::stores::StoreOptions { pool_size: self.pool_size, partitions }
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

/// Every setting's key in dotted form (`relay.queue_limit`): the core's and
/// each capability's.
fn known_keys(modules: &[Module]) -> Vec<String> {
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
    for module in modules {
        out.push(module.name().to_owned());
        collect(&module.default_config(), module.name(), &mut out);
    }
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

    /// A value of the setting's kind, unlike its default.
    fn sample(key: &str, default: &serde_json::Value) -> (String, serde_json::Value) {
        use serde_json::{Value, json};
        let text = |s: &str| (s.to_owned(), json!(s));
        match (key, default) {
            ("listen", _) => text("127.0.0.9:4242"),
            ("log_format", _) => text("json"),
            ("database", _) => text("postgres://u@h/d"),
            ("partitions", _) => ("7".into(), json!(7)),
            ("rail.time_zone", _) => text("Europe/Moscow"),
            (_, Value::Bool(b)) => ((!b).to_string(), json!(!b)),
            (_, Value::Number(_)) => ("4242".into(), json!(4242)),
            (_, Value::Array(_)) => ("[\"10.0.0.0/8\"]".into(), json!(["10.0.0.0/8"])),
            // Durations are the strings that start with a digit (`30s`, `7days`).
            (_, Value::String(s)) if s.starts_with(|c: char| c.is_ascii_digit()) => text("42s"),
            _ => text("sample-value"),
        }
    }

    #[test]
    fn every_variable_in_the_readme_reaches_its_setting() {
        let readme = include_str!("../../../README.md");
        let rows: Vec<(&str, &str)> = readme
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let var = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
                var.starts_with("RELAYHUB_").then_some((key, var))
            })
            .collect();
        assert!(rows.len() > 30, "the README's table was not found ({} rows)", rows.len());
        let documented: Vec<&str> = readme.lines().filter_map(|l| l.strip_prefix("| `")?.split('`').next()).collect();
        for key in known_keys(&capabilities::modules()) {
            let leaf = !known_keys(&capabilities::modules()).iter().any(|k| k.starts_with(&format!("{key}.")));
            assert!(!leaf || documented.contains(&key.as_str()), "the README's table lacks `{key}`");
        }
        let defaults = serde_json::to_value(Config::load_with(None, &Overrides::default(), []).unwrap().0).unwrap();
        for (key, var) in rows {
            let default = key.split('.').fold(&defaults, |v, k| &v[k]);
            let (raw, want) = sample(key, default);
            let (config, unknown) = Config::load_with(None, &Overrides::default(), [(var.to_owned(), raw.clone())])
                .unwrap_or_else(|e| panic!("{var}={raw}: {e:#}"));
            assert!(unknown.is_empty(), "{var} was not recognised");
            let got = serde_json::to_value(config).unwrap();
            let got = key.split('.').fold(&got, |v, k| &v[k]);
            assert_eq!(got, &want, "{var}={raw} did not reach {key}");
        }
    }

    #[test]
    fn typos_are_reported_and_unknown_sections_refused() {
        let env = [("RELAYHUB_RELAY__QUEUE_LIMT".to_owned(), "5".to_owned())];
        let (_, unknown) = Config::load_with(None, &Overrides::default(), env).unwrap();
        assert_eq!(unknown, ["RELAYHUB_RELAY__QUEUE_LIMT"]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[relya]\nqueue_limit = 5\n").unwrap();
        let err = Config::load_with(Some(&file), &Overrides::default(), []).unwrap_err();
        assert!(format!("{err:#}").contains("relya"), "{err:#}");
        std::fs::write(&file, "[relay]\nqueue_limt = 5\n").unwrap();
        let err = Config::load_with(Some(&file), &Overrides::default(), []).unwrap_err();
        assert!(format!("{err:#}").contains("queue_limt"), "{err:#}");
    }

    #[test]
    fn the_signal_open_flag_opens_signaling_over_the_file_and_keeps_its_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[signal]\nopen = false\nringing_timeout = \"7s\"\n").unwrap();
        let flagged = Overrides { signal: Some(relayhub_signal::SignalFlags { open: true }), ..Overrides::default() };
        let signal = |overrides: &Overrides| {
            let (config, _) = Config::load_with(Some(&file), overrides, []).unwrap();
            config.section::<relayhub_signal::SignalConfig>()
        };
        let (plain, open) = (signal(&Overrides::default()), signal(&flagged));
        assert!(!plain.open && open.open);
        assert_eq!(open.ringing_timeout, std::time::Duration::from_secs(7));
    }
}
