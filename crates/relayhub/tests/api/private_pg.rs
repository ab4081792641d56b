//! A PostgreSQL server of a test's own (initdb in a temporary directory, on
//! a free loopback port), so that the test can stop and start it without
//! touching any other test's database.

use std::path::PathBuf;
use std::process::Command;

/// Where the PostgreSQL programs are: `RELAYHUB_TEST_PG_BIN`, else
/// Debian's PostgreSQL 15.
fn bin_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("RELAYHUB_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    dir.join("initdb").exists().then_some(dir)
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// PostgreSQL refuses to run as root: run its programs as `postgres` then.
fn as_postgres(program: PathBuf) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    pub url: String,
}

impl PrivatePostgres {
    /// Creates and starts a cluster, or `None` if PostgreSQL is not
    /// installed here.
    pub fn start() -> Option<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::tempdir().ok()?;
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().ok()?;
            assert!(status.success(), "chown the cluster directory to postgres");
        }
        let data = dir.path().join("data");
        let status = as_postgres(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "relayhub", "--auth=trust", "-E", "UTF8", "--no-instructions"])
            .stdout(std::process::Stdio::null())
            .status()
            .ok()?;
        assert!(status.success(), "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let pg = Self { url: format!("postgres://relayhub@127.0.0.1:{port}/postgres"), dir, bin, port };
        pg.ctl(&["start"]);
        Some(pg)
    }

    fn ctl(&self, action: &[&str]) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let status = as_postgres(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-o", &options])
            .args(action)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run pg_ctl");
        assert!(status.success(), "pg_ctl {action:?}");
    }

    /// Stops the server the way an operator restarting it would (fast:
    /// open connections are terminated).
    pub fn stop(&self) {
        self.ctl(&["-m", "fast", "stop"]);
    }

    pub fn start_again(&self) {
        self.ctl(&["start"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let options = format!("-p {}", self.port);
        let _ = as_postgres(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-o", &options, "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
