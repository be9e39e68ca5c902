//! `orgtrail console password` and `orgtrail console token create | list | revoke`.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::auth::{self, TokenRecord};

#[derive(Debug, clap::Subcommand)]
pub enum ConsoleCommand {
    /// Set (or reset) the console's admin password; asks twice without echo, or reads one line of
    /// standard input with --stdin
    Password {
        /// Read the password from one line of standard input
        #[arg(long)]
        stdin: bool,
    },
    /// API tokens for scripts (`Authorization: Bearer <token>`)
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its hash is kept)
    Create { name: String },
    /// List token names and creation times
    List,
    /// Revoke a token by name
    Revoke { name: String },
}

pub fn run(cmd: ConsoleCommand, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let path = auth::auth_path(data_dir);
    let mut data = auth::load(&path)?;
    match cmd {
        ConsoleCommand::Password { stdin } => {
            let (password, confirm) = if stdin || !std::io::stdin().is_terminal() {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("cannot read the password from standard input")?;
                let p = line.trim_end_matches(['\r', '\n']).to_owned();
                (p.clone(), p)
            } else {
                (
                    rpassword::prompt_password("New admin password: ")?,
                    rpassword::prompt_password("Again: ")?,
                )
            };
            if let Err(e) = auth::check_new_password(&password, &confirm) {
                bail!("{e}");
            }
            data.password_hash = Some(auth::hash_password(&password)?);
            auth::save(&path, &data)?;
            println!(
                "the console's admin password is set ({}); sessions already open stay open until they expire or orgtrail restarts",
                path.display()
            );
        }
        ConsoleCommand::Token(TokenCommand::Create { name }) => {
            let name = name.trim().to_owned();
            if name.is_empty() || name.chars().any(char::is_control) {
                bail!("give the token a name, e.g. `orgtrail console token create ci`");
            }
            if data.tokens.iter().any(|t| t.name == name) {
                bail!("a token named {name:?} exists; revoke it first or pick another name");
            }
            let token = auth::new_api_token()?;
            data.tokens.push(TokenRecord {
                name: name.clone(),
                sha256: auth::sha256_hex(&token),
                created_at: jiff::Timestamp::now().to_string(),
            });
            auth::save(&path, &data)?;
            eprintln!(
                "token {name:?} created; it is shown once, store it now. Use it as: Authorization: Bearer <token>"
            );
            println!("{token}");
        }
        ConsoleCommand::Token(TokenCommand::List) => {
            if data.tokens.is_empty() {
                println!("no API tokens; create one with `orgtrail console token create NAME`");
            }
            for t in &data.tokens {
                println!("{}\tcreated {}", t.name, t.created_at);
            }
        }
        ConsoleCommand::Token(TokenCommand::Revoke { name }) => {
            let before = data.tokens.len();
            data.tokens.retain(|t| t.name != name);
            if data.tokens.len() == before {
                bail!("no token named {name:?}; `orgtrail console token list` shows them");
            }
            auth::save(&path, &data)?;
            println!("revoked token {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
