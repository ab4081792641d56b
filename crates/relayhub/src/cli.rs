//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::capabilities;
use crate::config::LogFormat;
pub use relayhub_core::identity::BindingPolicy;

/// A parsed command line: one of the server's own commands, or one a
/// capability adds (`relayhub user …`).
#[derive(Debug)]
pub enum Invocation {
    Builtin(Cli),
    Capability { global: GlobalArgs, command: String, args: ArgMatches },
}

/// The command line with every capability's commands; exits with clap's
/// message on a usage error or `--help`.
pub fn parse_from<I, T>(args: I) -> Invocation
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut command = Cli::command();
    let mut added = Vec::new();
    for module in capabilities::modules() {
        for sub in module.commands() {
            added.push(sub.get_name().to_owned());
            command = command.subcommand(sub);
        }
    }
    let matches = command.get_matches_from(args);
    match matches.subcommand() {
        Some((name, args)) if added.iter().any(|a| a == name) => Invocation::Capability {
            global: GlobalArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()),
            command: name.to_owned(),
            args: args.clone(),
        },
        _ => Invocation::Builtin(Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())),
    }
}

/// relayhub: one server between back-office systems and fleets of devices.
///
/// Accounting systems queue JSON messages per device over HTTP; devices
/// receive them in order over a WebSocket, acknowledge them, and send
/// records back. Data lives in an embedded SQLite file unless --database
/// points elsewhere.
#[derive(Debug, Parser)]
#[command(name = "relayhub", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted anywhere on the command line.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Directory of the embedded database [default: ./relayhub-data]
    #[arg(long, global = true, env = "RELAYHUB_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (overrides --data)
    #[arg(long, global = true, env = "RELAYHUB_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// Files the embedded database spreads the relay's data over, one writer
    /// thread each; new licenses go round robin [default: half the cores,
    /// at most 8]
    #[arg(long, global = true, env = "RELAYHUB_PARTITIONS", value_name = "N")]
    pub partitions: Option<usize>,
    /// TOML configuration file (see README for every key)
    #[arg(long, global = true, env = "RELAYHUB_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print results as JSON on stdout (errors as JSON on stderr)
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (HTTP API, device WebSocket, docs at /docs, web console at /console)
    Serve(ServeArgs),
    /// Manage licenses (tenants) and their bearer tokens
    #[command(subcommand)]
    License(LicenseCommand),
    /// Manage app API keys (the key compiled into the device app)
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Start a throwaway server and show traffic flowing both ways, then exit
    Demo(DemoArgs),
    /// Copy the embedded database into a new data directory, consistently, while the server runs
    Backup(BackupArgs),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where the copy goes: a new or empty directory, which `relayhub serve --data DIR` serves as it is
    #[arg(value_name = "DIR")]
    pub into: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "RELAYHUB_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Log format; the level is set with RELAYHUB_LOG (e.g. info, relayhub=debug)
    #[arg(long, env = "RELAYHUB_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Accept call-signaling sockets (/ws/signal) without an API key, as seed 003 did
    #[arg(long)]
    pub signal_open: bool,
}

/// A date (the last valid day, UTC) or `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    On(NaiveDate),
    Never,
}

fn parse_expiry(raw: &str) -> Result<Expiry, String> {
    if raw.eq_ignore_ascii_case("never") {
        return Ok(Expiry::Never);
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map(Expiry::On).map_err(|_| "expected YYYY-MM-DD or never".into())
}

/// A device limit or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    At(u32),
    Unlimited,
}

fn parse_limit(raw: &str) -> Result<Limit, String> {
    if raw.eq_ignore_ascii_case("unlimited") {
        return Ok(Limit::Unlimited);
    }
    raw.parse().map(Limit::At).map_err(|_| "expected a number or unlimited".into())
}

#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Create a license; prints its first bearer token, shown only once
    Create {
        /// The license number the accounting system knows
        #[arg(long, value_name = "LIC")]
        number: String,
        /// A name for people
        #[arg(long, default_value = "")]
        name: String,
        /// Last valid day, UTC (YYYY-MM-DD); never expires if omitted
        #[arg(long, value_parser = parse_expiry, value_name = "YYYY-MM-DD")]
        expires: Option<Expiry>,
        /// Devices that may be bound at once; unlimited if omitted
        #[arg(long, value_parser = parse_limit, value_name = "N")]
        max_devices: Option<Limit>,
        /// How devices bind: open (app key and id, as seed 000), first_use
        /// (the first connection gets a device secret, later ones must show
        /// it) or preregistered (first_use, for ids the back office bound)
        #[arg(long, default_value = "first_use", value_name = "open|first_use|preregistered")]
        binding: BindingPolicy,
    },
    /// List licenses
    List,
    /// Show a license, its device count and its tokens
    Show {
        #[arg(value_name = "LIC")]
        number: String,
    },
    /// Change a license's name, expiry, device limit or binding policy
    Update {
        #[arg(value_name = "LIC")]
        number: String,
        #[arg(long)]
        name: Option<String>,
        /// Last valid day (YYYY-MM-DD), or never
        #[arg(long, value_parser = parse_expiry, value_name = "YYYY-MM-DD|never")]
        expires: Option<Expiry>,
        /// Device limit, or unlimited
        #[arg(long, value_parser = parse_limit, value_name = "N|unlimited")]
        max_devices: Option<Limit>,
        /// How devices bind (open, first_use, preregistered); devices bound
        /// before keep working, and get a secret on their next connection
        /// when it leaves open
        #[arg(long, value_name = "open|first_use|preregistered")]
        binding: Option<BindingPolicy>,
        /// true suspends the license at once (its tokens, devices and users
        /// are refused, its data kept); false resumes it
        #[arg(long, value_name = "true|false")]
        suspended: Option<bool>,
    },
    /// Manage a license's bearer tokens
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Add a bearer token (e.g. to rotate); shown only once
    Create {
        #[arg(value_name = "LIC")]
        license: String,
    },
    /// Revoke a token by its id (tok_…); it stops working at once
    Revoke {
        #[arg(value_name = "LIC")]
        license: String,
        #[arg(value_name = "TOKEN_ID")]
        token_id: String,
    },
    /// List a license's tokens (ids, never the secrets)
    List {
        #[arg(value_name = "LIC")]
        license: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create an app API key; shown only once
    Create {
        #[arg(long, default_value = "")]
        name: String,
        /// The licenses the key works with (repeat for more); with none,
        /// every license of the server. With any other license number the
        /// key is refused as if that license did not exist
        #[arg(long = "license", value_name = "LIC")]
        licenses: Vec<String>,
    },
    /// List API keys (ids, never the secrets)
    List,
    /// Revoke a key by its id (key_…); devices using it are disconnected
    Revoke {
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Simulated devices
    #[arg(long, default_value_t = 50)]
    pub devices: usize,
    /// Messages the simulated accounting system sends
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Records each device sends back
    #[arg(long, default_value_t = 20)]
    pub records: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_are_accepted_anywhere() {
        let cli = Cli::try_parse_from(["relayhub", "license", "list", "--json", "--data", "/tmp/x"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.data, Some(PathBuf::from("/tmp/x")));
    }
}
