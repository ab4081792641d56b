//! The server as a separate process, as an operator runs it: `relayhub
//! serve` on a free loopback port, and the administration commands.

use std::process::Stdio;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::PATIENCE;

/// A `relayhub serve` child process on a free loopback port.
pub struct ChildServer {
    pub child: Child,
    pub addr: String,
    /// Every line it logged (to stderr), as it comes.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
}

/// How to start a [`ChildServer`] beyond its database.
#[derive(Default)]
pub struct ChildOptions<'a> {
    /// Extra environment (`RELAYHUB_…` settings, `RELAYHUB_LOG`).
    pub env: Vec<(&'a str, &'a str)>,
    /// `--log-format` (default `json`, which `start` reads its address from).
    pub text_log: bool,
    /// A lower limit of open files (`ulimit -n`) for the process.
    pub open_files: Option<u32>,
}

impl ChildServer {
    pub async fn start(database: &[String]) -> Self {
        Self::start_with(database, ChildOptions::default()).await
    }

    pub async fn start_with(database: &[String], options: ChildOptions<'_>) -> Self {
        let binary = env!("CARGO_BIN_EXE_relayhub");
        let format = if options.text_log { "text" } else { "json" };
        let mut command = match options.open_files {
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), binary]);
                sh
            }
            None => Command::new(binary),
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", format])
            .args(database)
            .env("RELAYHUB_LOG", "info")
            .envs(options.env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn relayhub");
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let seen = log.clone();
        let addr = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                seen.lock().unwrap().push(line.clone());
                if let Some(addr) = listening_on(&line) {
                    return addr;
                }
            }
            panic!("the server exited before listening: {:?}", seen.lock().unwrap());
        })
        .await
        .expect("the server listens in time");
        // Keep draining its log so it never blocks on a full pipe.
        let seen = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                seen.lock().unwrap().push(line);
            }
        });
        Self { child, addr, log }
    }

    /// Everything logged so far, one line each.
    pub fn logged(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// The address of a "relayhub listening" line, JSON or text.
fn listening_on(line: &str) -> Option<String> {
    if let Ok(log) = serde_json::from_str::<Value>(line) {
        return (log["message"] == "relayhub listening").then(|| log["addr"].as_str().unwrap_or_default().to_owned());
    }
    let rest = line.split("relayhub listening").nth(1)?;
    Some(rest.split("addr=").nth(1)?.split_whitespace().next()?.to_owned())
}

/// Runs a `relayhub` administration command with `--json`; its output.
pub fn cli(database: &[String], args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relayhub"))
        .args(args)
        .arg("--json")
        .args(database)
        .output()
        .expect("run relayhub");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
