//! `relayhub user …`: fleet users, on the database the server uses.
//! Passwords are read from standard input, never from the command line
//! (where `ps` and shell history would show them).

use clap::{ArgMatches, FromArgMatches, Subcommand};
use relayhub_core::capability::CommandOutput;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::identity::License;
use relayhub_core::ids::LicenseNumber;
use serde_json::json;

use crate::Fleet;
use relayhub_core::password::{check_email, read_password};

use crate::model::{Role, User, UserPatch};
use relayhub_core::operators::Auditor;

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user of a license; the password is read from stdin
    Create {
        /// The license (operator company) the user belongs to
        #[arg(long, value_name = "LIC")]
        license: String,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, value_enum, default_value_t = Role::User)]
        role: Role,
        /// The password comes from stdin (always so; accepted for scripts)
        #[arg(long)]
        password_stdin: bool,
    },
    /// List a license's users
    List {
        #[arg(long, value_name = "LIC")]
        license: String,
    },
    /// Change a user's role, name or whether it may sign in
    Update {
        email: String,
        #[arg(long, value_enum)]
        role: Option<Role>,
        /// false signs the user out at once
        #[arg(long, value_name = "true|false")]
        active: Option<bool>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Set a user's password, read from stdin; its sessions end
    Passwd { email: String },
}

/// `relayhub user`, for the command line.
pub fn command() -> clap::Command {
    UserCommand::augment_subcommands(
        clap::Command::new("user")
            .about("Manage fleet users (seed 002): sign-in for robots' owners")
            .subcommand_required(true),
    )
}

impl Fleet {
    /// A license by its number, else 404 `license_not_found`.
    pub(crate) async fn license_named(&self, number: &str) -> Result<License, ApiError> {
        let number = LicenseNumber::parse(number)?;
        Ok(relayhub_core::identity::existing_license(self.identity.as_ref(), &number).await?)
    }

    async fn user_named(&self, email: &str) -> Result<(User, License), ApiError> {
        let email = check_email(email)?;
        let user = self
            .users
            .user_by_email(&email)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::USER_NOT_FOUND, format!("no user {email}")))?;
        let license = self
            .identity
            .license_by_pk(user.license)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::LICENSE_NOT_FOUND, "the user's license is gone"))?;
        Ok((user, license))
    }
}

fn describe(user: &User) -> String {
    let state = if user.is_active { "" } else { ", deactivated" };
    format!(
        "{} {} ({}{state}){}",
        user.id,
        user.email,
        user.role.as_str(),
        if user.name.is_empty() { String::new() } else { format!(" {}", user.name) }
    )
}

/// Runs `relayhub user …`.
pub async fn run(fleet: &Fleet, name: &str, args: &ArgMatches) -> Result<CommandOutput, ApiError> {
    if name != "user" {
        return Err(ApiError::new(ErrorCode::NOT_FOUND, format!("fleet has no command {name}")));
    }
    let command = UserCommand::from_arg_matches(args).map_err(|e| ApiError::invalid_field(e.to_string()))?;
    let auditor = Auditor::cli(fleet.audit.clone());
    match command {
        UserCommand::Create { license, email, name, role, password_stdin: _ } => {
            let license = fleet.license_named(&license).await?;
            let password = read_password().await?;
            let user = fleet.add_user(&auditor, &license, &email, &name, role, Some(password)).await?;
            let text = format!("Created user {} in {}.", describe(&user), license.number);
            Ok(CommandOutput::new(user.view(&license.number), text))
        }
        UserCommand::List { license } => {
            let license = fleet.license_named(&license).await?;
            let users = fleet.users.users(license.pk).await?;
            let text = if users.is_empty() {
                format!("No users in {}: relayhub user create --license {} --email …", license.number, license.number)
            } else {
                users.iter().map(describe).collect::<Vec<_>>().join("\n")
            };
            let views: Vec<_> = users.iter().map(|u| u.view(&license.number)).collect();
            Ok(CommandOutput::new(views, text))
        }
        UserCommand::Update { email, role, active, name } => {
            let (user, license) = fleet.user_named(&email).await?;
            let patch = UserPatch { name, role, is_active: active };
            let user = fleet.change_user(&auditor, &license, user.id, patch).await?;
            Ok(CommandOutput::new(user.view(&license.number), format!("Updated {}.", describe(&user))))
        }
        UserCommand::Passwd { email } => {
            let (user, license) = fleet.user_named(&email).await?;
            fleet.change_password(&auditor, &license, &user, read_password().await?).await?;
            let out = json!({"email": user.email, "changed": true});
            Ok(CommandOutput::new(out, format!("Changed the password of {}; its sessions ended.", user.email)))
        }
    }
}
