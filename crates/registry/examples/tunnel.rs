//! A tunnel for a warehouse instance behind NAT: holds a WebSocket to the
//! registry's `/ws/instance` and answers the proxy's requests from a local
//! HTTP server, reconnecting with a growing pause when the tunnel drops.
//!
//! ```text
//! cargo run -p relayhub-registry --example tunnel -- \
//!     --server wss://hub.example.com/ws/instance --instance warehouse-berlin \
//!     --local http://127.0.0.1:3000
//! ```
//! with `RELAYHUB_API_KEY` and `RELAYHUB_INSTANCE_TOKEN` in the environment.

use std::time::Duration;

use clap::Parser;
use relayhub_registry::tunnel::client::TunnelClient;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(about = "Carry relayhub registry proxy requests to a local server")]
struct Args {
    /// The registry's tunnel URL
    #[arg(long)]
    server: String,
    /// This instance's id, as its devices register it
    #[arg(long)]
    instance: String,
    /// The local server requests go to
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    local: String,
    /// The app API key
    #[arg(long, env = "RELAYHUB_API_KEY", hide_env_values = true)]
    api_key: String,
    /// From `relayhub registry instance-token`
    #[arg(long, env = "RELAYHUB_INSTANCE_TOKEN", hide_env_values = true)]
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let client = TunnelClient {
        server: args.server,
        api_key: args.api_key,
        instance_id: args.instance,
        token: args.token,
        local: args.local,
    };
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    let mut pause = Duration::from_secs(1);
    while !stop.is_cancelled() {
        let started = tokio::time::Instant::now();
        match client.run(stop.clone(), None).await {
            Ok(()) => tracing::info!("tunnel closed"),
            Err(err) => tracing::warn!(%err, "tunnel failed"),
        }
        // A tunnel that held for a while starts over with a short pause.
        pause = if started.elapsed() > Duration::from_secs(60) {
            Duration::from_secs(1)
        } else {
            (pause * 2).min(Duration::from_secs(30))
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => {}
        }
    }
    Ok(())
}
