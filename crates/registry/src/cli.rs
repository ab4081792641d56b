//! `relayhub registry …`: registered devices and instance tunnel tokens,
//! on the database the server uses. A status change takes effect on the
//! device's next call, on every node (statuses are never cached).

use clap::{ArgMatches, FromArgMatches, Subcommand};
use relayhub_core::capability::CommandOutput;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::operators::Auditor;
use relayhub_core::secret::Secret;
use relayhub_core::time::Timestamp;
use serde_json::json;

use crate::Registry;
use crate::codes;
use crate::model::{DeviceFilter, DeviceStatus, RegisteredDevice};
use crate::rules;

/// The most devices `list` prints.
const LIST_LIMIT: usize = 10_000;

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// List registered devices
    List {
        #[arg(long, value_enum)]
        status: Option<DeviceStatus>,
        #[arg(long, value_name = "ID")]
        instance: Option<String>,
    },
    /// Let a device use the proxy
    Approve { device_uuid: String },
    /// Refuse a device everywhere, from its next call
    Block { device_uuid: String },
    /// Make a blocked device active again
    Unblock { device_uuid: String },
    /// Issue (or replace) the token an instance behind NAT opens its tunnel with; shown once
    InstanceToken { instance_id: String },
}

/// `relayhub registry`, for the command line.
pub fn command() -> clap::Command {
    RegistryCommand::augment_subcommands(
        clap::Command::new("registry")
            .about("Manage the device registry (seed 001): approve, block, tunnel tokens")
            .subcommand_required(true),
    )
}

fn describe(device: &RegisteredDevice) -> String {
    let url = device.public_url.as_deref().unwrap_or("(tunnel)");
    format!(
        "{} {} {} {} last seen {}",
        device.device_uuid,
        device.status.as_str(),
        device.instance_id,
        url,
        device.last_seen
    )
}

/// Runs `relayhub registry …`.
pub async fn run(registry: &Registry, name: &str, args: &ArgMatches) -> Result<CommandOutput, ApiError> {
    if name != "registry" {
        return Err(ApiError::new(ErrorCode::NOT_FOUND, format!("registry has no command {name}")));
    }
    let command = RegistryCommand::from_arg_matches(args).map_err(|e| ApiError::invalid_field(e.to_string()))?;
    let auditor = &Auditor::cli(registry.audit.clone());
    let set = |uuid: String, status: DeviceStatus| async move {
        let device = registry.set_device_status(auditor, &uuid, status).await?;
        let text = format!("{}: {}", describe(&device), status.as_str());
        Ok::<_, ApiError>(CommandOutput::new(&device, text))
    };
    match command {
        RegistryCommand::List { status, instance } => {
            let instance_id = instance.as_deref().map(rules::instance_id).transpose()?;
            let devices = registry.devices.devices(DeviceFilter { status, instance_id }, LIST_LIMIT).await?;
            let text = if devices.is_empty() {
                "No devices.".to_owned()
            } else {
                devices.iter().map(describe).collect::<Vec<_>>().join("\n")
            };
            Ok(CommandOutput::new(&devices, text))
        }
        RegistryCommand::Approve { device_uuid } | RegistryCommand::Unblock { device_uuid } => {
            set(device_uuid, DeviceStatus::Active).await
        }
        RegistryCommand::Block { device_uuid } => set(device_uuid, DeviceStatus::Blocked).await,
        RegistryCommand::InstanceToken { instance_id } => {
            let instance_id = rules::instance_id(&instance_id)?;
            let token = Secret::generate(codes::INSTANCE_TOKEN);
            registry.tokens.set_instance_token(&instance_id, token.hash(), Timestamp::now()).await?;
            auditor.record("registry_instance_token.create", None, Some(instance_id.as_str()), json!({})).await;
            let out = json!({"instance_id": instance_id, "token": token.expose()});
            let text = format!(
                "Tunnel token for {instance_id} (shown once; a previous token no longer opens a tunnel):\n{}",
                token.expose()
            );
            Ok(CommandOutput::new(out, text))
        }
    }
}
