//! `relayhub operator …`: the first operator and their tokens, made on the
//! server's command line; every act is in the audit log as done by `cli`.
//! Passwords come from standard input, never from the command line.

use clap::{ArgMatches, FromArgMatches, Subcommand};
use relayhub_core::capability::CommandOutput;
use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::operators::{Auditor, Operator};
use serde_json::json;

use crate::Admin;
use crate::acts::Acts;

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Create an operator (a server administrator); the password is read from stdin
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List operators
    List,
    /// Manage operators' API tokens (rho_…), for scripts and billing systems
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token for an operator; shown only once
    Create {
        /// The operator it acts as (its email); may be left out when there is one
        #[arg(long, value_name = "EMAIL")]
        operator: Option<String>,
        /// What the token is for (a script, a billing system)
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List operators' tokens (ids, never the secrets)
    List,
    /// Revoke a token by its id (opt_…); it stops working at once
    Revoke {
        #[arg(value_name = "TOKEN_ID")]
        id: String,
    },
}

/// `relayhub operator`, for the command line.
pub fn command() -> clap::Command {
    OperatorCommand::augment_subcommands(
        clap::Command::new("operator")
            .about("Manage operators (server administrators) and their admin API tokens")
            .subcommand_required(true),
    )
}

fn describe(operator: &Operator) -> String {
    let name = if operator.name.is_empty() { String::new() } else { format!(" ({})", operator.name) };
    format!("{} {}{name}", operator.id, operator.email)
}

impl Admin {
    fn cli_acts(&self) -> Acts {
        Acts {
            identity: self.identity.clone(),
            operators: self.operators.clone(),
            auditor: Auditor::cli(self.audit.clone()),
        }
    }

    /// The operator a token is for: by email, or the only one.
    async fn operator_for_token(&self, email: Option<&str>) -> Result<Operator, ApiError> {
        let operators = self.operators.operators().await?;
        match email {
            Some(email) => {
                let email = email.trim().to_lowercase();
                operators.into_iter().find(|o| o.email == email).ok_or_else(|| {
                    ApiError::new(ErrorCode::NOT_FOUND, format!("no operator {email}: relayhub operator list"))
                })
            }
            None if operators.len() == 1 => Ok(operators.into_iter().next().expect("one")),
            None if operators.is_empty() => Err(ApiError::new(
                ErrorCode::NOT_FOUND,
                "no operator yet: relayhub operator create --email E --name N (password from stdin)",
            )),
            None => Err(ApiError::invalid_field("there are several operators: name one with --operator EMAIL")),
        }
    }
}

/// Runs `relayhub operator …`.
pub async fn run(admin: &Admin, name: &str, args: &ArgMatches) -> Result<CommandOutput, ApiError> {
    if name != "operator" {
        return Err(ApiError::new(ErrorCode::NOT_FOUND, format!("admin has no command {name}")));
    }
    let command = OperatorCommand::from_arg_matches(args).map_err(|e| ApiError::invalid_field(e.to_string()))?;
    match command {
        OperatorCommand::Create { email, name } => {
            let password = relayhub_core::password::read_password().await?;
            let operator = admin.cli_acts().create_operator(&email, name.trim(), password).await?;
            let text = format!(
                "Created operator {}.\nNext: relayhub operator token create --operator {} (for the admin API)",
                describe(&operator),
                operator.email
            );
            Ok(CommandOutput::new(&operator, text))
        }
        OperatorCommand::List => {
            let operators = admin.operators.operators().await?;
            let text = if operators.is_empty() {
                "No operators yet: relayhub operator create --email E --name N".to_owned()
            } else {
                operators.iter().map(describe).collect::<Vec<_>>().join("\n")
            };
            Ok(CommandOutput::new(&operators, text))
        }
        OperatorCommand::Token(TokenCommand::Create { operator, name }) => {
            let operator = admin.operator_for_token(operator.as_deref()).await?;
            let token = admin.cli_acts().issue_operator_token(&operator, name.trim()).await?;
            let json = json!({"id": token.id, "token": token.secret.expose(), "operator": operator.id});
            let text = format!(
                "New admin API token {} for {} (shown only once, store it now):\n{}",
                token.id,
                operator.email,
                token.secret.expose()
            );
            Ok(CommandOutput::new(json, text))
        }
        OperatorCommand::Token(TokenCommand::List) => {
            let tokens = admin.operators.operator_tokens().await?;
            let text = if tokens.is_empty() {
                "none".to_owned()
            } else {
                tokens
                    .iter()
                    .map(|t| {
                        let state = t.info.revoked_at.map(|at| format!("revoked {at}")).unwrap_or("active".into());
                        format!(
                            "{}  operator {}  {}  created {}  {state}",
                            t.info.id, t.operator, t.info.name, t.info.created_at
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            Ok(CommandOutput::new(&tokens, text))
        }
        OperatorCommand::Token(TokenCommand::Revoke { id }) => {
            admin.cli_acts().revoke_operator_token(&id).await?;
            Ok(CommandOutput::new(json!({"id": id, "revoked": true}), format!("Revoked admin API token {id}.")))
        }
    }
}
