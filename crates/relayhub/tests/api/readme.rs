//! The README, run as a new user would: every shell block in order, in one
//! shell, against a fresh server, with the binary under test on `PATH` as
//! `relayhub`. A command that fails, or an answer unlike the one a comment
//! shows, fails the test with the README line it is on (see
//! [`crate::walkthrough`] for the rules).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::field::{available, python_module};
use crate::process::{ChildOptions, ChildServer};
use crate::walkthrough::{self, Script};

/// The repository's root.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn command_exists(name: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {name}")]).output().is_ok_and(|o| o.status.success())
}

/// `cargo` as the README's commands use it, for a test that must not build:
/// `cargo run --release -- ARGS` is the binary under test, and the one
/// `cargo install` of it is already done (it is on `PATH`).
const CARGO: &str = r#"#!/bin/sh
case "$*" in
  "run --release -- "*) shift 3; exec relayhub "$@" ;;
  "install --locked --path crates/relayhub") exit 0 ;;
  *) echo "cargo $*: not something the README test runs" >&2; exit 1 ;;
esac
"#;

/// The documents whose shell blocks run: the README, then docs/.
fn documents(root: &Path) -> Vec<(String, String)> {
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> =
        walk(&root.join("docs")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(root).unwrap().display().to_string();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { found.extend(walk(&path)) } else { found.push(path) }
    }
    found
}

/// A loopback port nothing listens on now, for the README's warehouse
/// instance (a Python process the README starts, which cannot be told to
/// take any free port and say which).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_runs_as_written_from_top_to_bottom() {
    for tool in ["bash", "curl", "jq", "openssl", "python3", "timeout"] {
        if !available(&format!("{tool} (the README's walk-through uses it)"), command_exists(tool)) {
            return;
        }
    }
    if !available("Python's websockets (the README test's WebSocket client)", python_module("websockets")) {
        return;
    }
    let root = repository();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_relayhub"), bin.join("relayhub")).unwrap();
    std::fs::write(bin.join("cargo"), CARGO).unwrap();
    std::fs::set_permissions(bin.join("cargo"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The README's paths are the repository's (its fixtures).
    std::os::unix::fs::symlink(root.join("crates"), dir.path().join("crates")).unwrap();

    // The server as the README starts it, with the data where its
    // administration commands look (./relayhub-data), and the setting its
    // registry section restarts it with.
    let data = dir.path().join("relayhub-data");
    let options = ChildOptions {
        env: vec![("RELAYHUB_REGISTRY__ALLOW_PRIVATE", r#"["127.0.0.0/8"]"#)],
        ..ChildOptions::default()
    };
    let server = ChildServer::start_with(&["--data".to_owned(), data.display().to_string()], options).await;

    let mut blocks = Vec::new();
    for (name, text) in documents(&root) {
        blocks.extend(walkthrough::blocks(&name, &text));
    }
    let instance = free_port();
    let substitutions = [
        ("127.0.0.1:8080".to_owned(), server.addr.clone()),
        ("localhost:8080".to_owned(), server.addr.clone()),
        ("127.0.0.1:3000".to_owned(), format!("127.0.0.1:{instance}")),
        ("http.server 3000".to_owned(), format!("http.server {instance}")),
    ];
    let answers = walkthrough::answers(&blocks, &substitutions);
    let running = blocks.iter().filter(|b| b.skip.is_none()).count();
    assert!(
        running >= 12 && answers.len() >= 25,
        "the README's walk-through was not found: {running} blocks, {} answers",
        answers.len()
    );
    let prelude = format!("set -euo pipefail\nexport PATH={}:\"$PATH\"", bin.display());
    let script = Script::new(&blocks, &prelude, &substitutions);
    std::fs::write(dir.path().join("walkthrough.sh"), &script.text).unwrap();

    let workdir = dir.path().to_owned();
    let ran = tokio::task::spawn_blocking(move || {
        use std::os::unix::process::CommandExt;
        let mut bash = Command::new("timeout");
        // Bounded as a whole; its own process group, so that whatever it
        // left running (the README's instance) is stopped with it.
        bash.args(["-k", "5", "300", "bash", "walkthrough.sh"]).current_dir(&workdir).process_group(0);
        bash.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
        let child = bash.spawn().unwrap();
        let group = child.id();
        let ran = child.wait_with_output();
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).output();
        ran.unwrap()
    });
    let ran = ran.await.unwrap();
    let output = String::from_utf8_lossy(&ran.stdout).into_owned();
    let readable = output.replace('\u{1e}', "@");
    // All of it, each command's output after "@LINE@" (the script's line),
    // for whoever reads a failure; the script beside it.
    let keep = concat!(env!("CARGO_TARGET_TMPDIR"), "/../readme-walkthrough");
    let _ = std::fs::write(format!("{keep}.out"), &readable);
    let _ = std::fs::write(format!("{keep}.sh"), &script.text);

    assert!(
        ran.status.success(),
        "the walk-through stopped ({}) at {}; its output's end:\n{}\nthe server's log:\n{}",
        ran.status,
        script.stopped_at(&blocks, &output),
        tail(&readable, 4000),
        tail(&server.logged(), 2000),
    );
    let failures = script.check(&blocks, &answers, &output);
    assert!(
        failures.is_empty(),
        "{} of {} answers differ from the README:\n\n{}",
        failures.len(),
        answers.len(),
        failures.join("\n\n")
    );
}

fn tail(text: &str, bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
