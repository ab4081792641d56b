//! What each subcommand does, from parsed arguments to an exit code.

use std::process::ExitCode;

use anyhow::Context;
use relayhub_core::error::ApiError;
use tokio::net::TcpListener;

use crate::admin::{self, Output};
use crate::cli::{Cli, Command, GlobalArgs, Invocation, ServeArgs};
use crate::config::{Config, Overrides};
use crate::{backup, capabilities, demo, logging, server, server::Server};

/// Runs the command line; errors are printed here.
pub async fn run(invocation: Invocation) -> ExitCode {
    let json = match &invocation {
        Invocation::Builtin(cli) => cli.global.json,
        Invocation::Capability { global, .. } => global.json,
    };
    let outcome = match invocation {
        Invocation::Builtin(cli) => dispatch(cli).await,
        Invocation::Capability { global, command, args } => capability_command(&global, &command, &args).await,
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            if json {
                let body = serde_json::json!({"error": {"code": "failed", "message": format!("{err:#}")}});
                eprintln!("{body}");
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        data: cli.global.data.clone(),
        database: cli.global.database.clone(),
        partitions: cli.global.partitions,
        ..Overrides::default()
    };
    match cli.command {
        Command::Serve(args) => serve(&cli.global.config, overrides, args).await.map(|()| ExitCode::SUCCESS),
        Command::License(command) => {
            let (config, _) = Config::load(cli.global.config.as_deref(), &overrides)?;
            let result = admin::license(&config.database_url()?, config.store_options().partitions, command).await?;
            Ok(print(result, cli.global.json))
        }
        Command::Apikey(command) => {
            let (config, _) = Config::load(cli.global.config.as_deref(), &overrides)?;
            let result = admin::apikey(&config.database_url()?, config.store_options().partitions, command).await?;
            Ok(print(result, cli.global.json))
        }
        Command::Demo(args) => demo::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Backup(args) => {
            let (config, _) = Config::load(cli.global.config.as_deref(), &overrides)?;
            let output = backup::run(&config.database_url()?, args.into).await?;
            Ok(print(Ok(output), cli.global.json))
        }
    }
}

/// Runs a command a capability added, on the database `serve` would use.
async fn capability_command(global: &GlobalArgs, command: &str, args: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let overrides = Overrides { data: global.data.clone(), database: global.database.clone(), ..Overrides::default() };
    let (config, _) = Config::load(global.config.as_deref(), &overrides)?;
    let owner = capabilities::modules()
        .into_iter()
        .find(|m| m.commands().iter().any(|c| c.get_name() == command))
        .map(|m| m.name())
        .ok_or_else(|| anyhow::anyhow!("no capability has the command {command}"))?;
    let platform = server::platform(&config, false).await?;
    let built = server::build_capabilities(&config, &platform)?;
    let capability = built.iter().find(|c| c.name() == owner).ok_or_else(|| anyhow::anyhow!("{owner} is not built"))?;
    let result = capability.run_command(command, args).await;
    platform.stores.close().await;
    Ok(print(result, global.json))
}

fn print(result: Result<Output, ApiError>, json: bool) -> ExitCode {
    match (result, json) {
        (Ok(out), true) => println!("{}", out.json),
        (Ok(out), false) => println!("{}", out.text),
        (Err(err), true) => {
            eprintln!("{}", serde_json::to_string(&err.body()).unwrap_or_default());
            return ExitCode::FAILURE;
        }
        (Err(err), false) => {
            eprintln!("error: {}", err.message);
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

async fn serve(file: &Option<std::path::PathBuf>, mut overrides: Overrides, args: ServeArgs) -> anyhow::Result<()> {
    overrides.listen = args.listen;
    overrides.log_format = args.log_format;
    overrides.signal = args.signal_open.then_some(relayhub_signal::SignalFlags { open: true });
    let (config, unknown) = Config::load(file.as_deref(), &overrides)?;
    logging::init(config.log_format);
    for name in unknown {
        tracing::warn!(%name, "unknown environment variable ignored (typo?)");
    }
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
    let server = Server::build(config, listener).await?;
    server.run(shutdown_signal()).await
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
