//! Logs via `tracing`: level from `RELAYHUB_LOG` (default `info`), text or
//! JSON lines on stderr.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber once; later calls do nothing (tests).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RELAYHUB_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a terminal: a log file gets no escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
