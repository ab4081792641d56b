//! The systems under test, each started as a child process on a free
//! loopback port with a temporary data directory, and stopped on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Which system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    Relayhub,
    #[value(name = "nats-jetstream")]
    Nats,
    Mosquitto,
    #[value(name = "victoria-metrics")]
    VictoriaMetrics,
    Influxdb,
    /// relayhub's registry proxy to an instance behind NAT (its tunnel).
    #[value(name = "relayhub-tunnel")]
    RelayhubTunnel,
    Nginx,
    /// ChromaDB's server (`chroma run`), seed 004's vector database.
    #[value(name = "chromadb")]
    Chroma,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Relayhub => "relayhub",
            System::Nats => "nats-jetstream",
            System::Mosquitto => "mosquitto",
            System::VictoriaMetrics => "victoria-metrics",
            System::Influxdb => "influxdb",
            System::RelayhubTunnel => "relayhub-tunnel",
            System::Nginx => "nginx",
            System::Chroma => "chromadb",
        }
    }

    /// When each system makes an accepted message durable.
    pub fn fsync(self) -> &'static str {
        match self {
            System::Relayhub => "fsync before every 202 / 204 (group commit)",
            System::Nats => "page cache per write, fsync every 2 min (2.9 default)",
            System::Mosquitto => "memory; snapshot to disk every 30 min (autosave_interval)",
            System::VictoriaMetrics => "memory; flushed to disk about every second",
            System::Influxdb => "WAL write per request; fsync per write (wal-fsync-delay 0s)",
            System::RelayhubTunnel | System::Nginx => "a proxy: stores nothing",
            System::Chroma => "write-ahead log per add",
        }
    }
}

/// A running server.
pub struct Server {
    pub system: System,
    /// `host:port`.
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
    /// relayhub only: the license's bearer token and the app API key.
    pub token: String,
    pub api_key: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `relayhub` binary: `RELAYHUB_BIN`, else next to this one.
fn relayhub_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("RELAYHUB_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    let sibling = exe.with_file_name("relayhub");
    if !sibling.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p relayhub) or set RELAYHUB_BIN",
            sibling.display()
        );
    }
    Ok(sibling)
}

/// Finds a program, or says which Debian package has it.
fn program(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return Ok(path);
        }
    }
    bail!("{name} is not installed (apt-get install {package})")
}

impl Server {
    /// Starts `system`; `extra` are extra `relayhub serve` arguments.
    pub async fn start(system: System, extra: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        match system {
            System::Relayhub | System::RelayhubTunnel => Self::relayhub(dir, system, extra).await,
            System::Nats => Self::nats(dir).await,
            System::Mosquitto => Self::mosquitto(dir).await,
            System::VictoriaMetrics => Self::victoria_metrics(dir).await,
            System::Influxdb => Self::influxdb(dir).await,
            System::Nginx => bail!("nginx is started by the proxy workload, in front of its instance"),
            System::Chroma => bail!("ChromaDB is started by the face workload"),
        }
    }

    async fn relayhub(dir: tempfile::TempDir, system: System, extra: &[String]) -> anyhow::Result<Self> {
        let bin = relayhub_binary()?;
        let admin = |args: &[&str]| -> anyhow::Result<Value> {
            let out =
                std::process::Command::new(&bin).args(args).arg("--json").arg("--data").arg(dir.path()).output()?;
            if !out.status.success() {
                bail!("relayhub {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(serde_json::from_slice(&out.stdout)?)
        };
        let token = admin(&["license", "create", "--number", "BENCH", "--binding", "open"])?["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let api_key = admin(&["apikey", "create"])?["key"].as_str().unwrap_or_default().to_owned();
        let mut child = Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data")
            .arg(dir.path())
            .args(extra)
            .env("RELAYHUB_LOG", "warn,relayhub::server=info")
            // A queue deep enough for any device of the benchmarks, and as
            // many robots pairing from one address as a benchmark wants.
            .env("RELAYHUB_RELAY__QUEUE_LIMIT", "1000000")
            .env("RELAYHUB_FLEET__PAIRINGS_PER_ADDRESS", "1000000")
            .env("RELAYHUB_RELAY__NEW_DEVICES_PER_MINUTE", "1000000")
            // Ingest measures throughput, not the per-robot rate and the
            // license's store size; the series bound (and its cost) stays.
            .env("RELAYHUB_FLEET__TELEMETRY__MAX_POINTS_PER_MINUTE", "1000000000000")
            .env("RELAYHUB_FLEET__TELEMETRY__MAX_BYTES_PER_LICENSE", "1000000000000000")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting relayhub")?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                if let Ok(log) = serde_json::from_str::<Value>(&line)
                    && log["message"] == "relayhub listening"
                {
                    return Ok(log["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
            bail!("relayhub exited before listening")
        })
        .await
        .context("relayhub did not start")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { system, addr, child, _dir: dir, token, api_key })
    }

    async fn nats(dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let bin = program("nats-server", "nats-server")?;
        let port = free_port()?;
        let mut command = Command::new(bin);
        command.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]).arg(dir.path());
        Self::peer(System::Nats, command, port, dir).await
    }

    async fn mosquitto(dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let bin = program("mosquitto", "mosquitto")?;
        let port = free_port()?;
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                 max_queued_messages 1000000\nmax_inflight_messages 128\nlog_dest none\n",
                dir.path().display()
            ),
        )?;
        let mut command = Command::new(bin);
        command.arg("-c").arg(&config);
        Self::peer(System::Mosquitto, command, port, dir).await
    }

    async fn victoria_metrics(dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let bin = program("victoria-metrics", "victoria-metrics")?;
        let port = free_port()?;
        let mut command = Command::new(bin);
        command
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=1y");
        Self::peer(System::VictoriaMetrics, command, port, dir).await
    }

    async fn influxdb(dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let bin = program("influxd", "influxdb")?;
        let (port, rpc) = (free_port()?, free_port()?);
        let d = dir.path().display();
        let config = dir.path().join("influxdb.conf");
        std::fs::write(
            &config,
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
                 [meta]\n  dir = \"{d}/meta\"\n\
                 [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
                 [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n  max-body-size = 0\n\
                 [monitor]\n  store-enabled = false\n"
            ),
        )?;
        let mut command = Command::new(bin);
        command.arg("-config").arg(&config);
        Self::peer(System::Influxdb, command, port, dir).await
    }

    /// relayhub only: `count` paired robots' tokens (a user made with the
    /// command line, each robot paired over HTTP).
    pub async fn robot_tokens(&self, count: usize) -> anyhow::Result<Vec<String>> {
        use tokio::io::AsyncWriteExt;
        let password = "bench password";
        let mut create = Command::new(relayhub_binary()?)
            .args(["user", "create", "--license", "BENCH", "--email", "bench@example.com", "--role", "admin", "--data"])
            .arg(self._dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        create.stdin.take().context("stdin")?.write_all(format!("{password}\n").as_bytes()).await?;
        if !create.wait().await?.success() {
            bail!("relayhub user create failed");
        }
        let http = relayhub_core::http_client::client().map_err(anyhow::Error::msg)?;
        let base = format!("http://{}", self.addr);
        let login = serde_json::json!({"email": "bench@example.com", "password": password});
        let session: Value = http.post(format!("{base}/api/auth/login")).json(&login).send().await?.json().await?;
        let access = session["access_token"].as_str().context("signed in")?.to_owned();
        let mut tokens = Vec::with_capacity(count);
        for i in 0..count {
            let body = serde_json::json!({"hostname": format!("robot-{i:05}"), "architecture": "arm64"});
            let started: Value = http.post(format!("{base}/api/pair")).json(&body).send().await?.json().await?;
            let code = started["code"].as_str().context("a pairing code")?;
            let confirmed = http.post(format!("{base}/api/pair/{code}/confirm")).bearer_auth(&access).send().await?;
            if !confirmed.status().is_success() {
                bail!("confirming a pairing: {}", confirmed.status());
            }
            let status: Value = http
                .get(format!("{base}/api/pair/{code}/status"))
                .header("x-pair-secret", started["poll_secret"].as_str().unwrap_or_default())
                .send()
                .await?
                .json()
                .await?;
            tokens.push(status["token"].as_str().context("the robot's token")?.to_owned());
        }
        Ok(tokens)
    }

    /// relayhub only: `BENCH` and `count - 1` more licenses (`BENCH-2`, …),
    /// each as its number and bearer token.
    pub fn licenses(&self, count: usize) -> anyhow::Result<Vec<(String, String)>> {
        let mut all = vec![("BENCH".to_owned(), self.token.clone())];
        for n in 2..=count {
            let number = format!("BENCH-{n}");
            let created = self.admin(&["license", "create", "--number", &number])?;
            all.push((number, created["token"].as_str().context("the new license's token")?.to_owned()));
        }
        Ok(all)
    }

    /// relayhub only: an administration command on its database (`--json`).
    pub fn admin(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = std::process::Command::new(relayhub_binary()?)
            .args(args)
            .arg("--json")
            .arg("--data")
            .arg(self._dir.path())
            .output()?;
        if !out.status.success() {
            bail!("relayhub {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// nginx as a reverse proxy to `upstream` (keep-alive connections,
    /// nothing buffered: as the shipped site does for `/ECK/`).
    pub async fn nginx(upstream: &str) -> anyhow::Result<Self> {
        let bin = program("nginx", "nginx-light")?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let d = dir.path().display();
        let config = dir.path().join("nginx.conf");
        std::fs::write(
            &config,
            format!(
                "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 4096; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                 upstream instance {{ server {upstream}; keepalive 64; }}\n\
                 server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://instance;\n\
                 proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n\
                 proxy_request_buffering off;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                 }}\n  }}\n}}\n"
            ),
        )?;
        let mut command = Command::new(bin);
        command.arg("-e").arg(dir.path().join("error.log")).arg("-p").arg(dir.path()).arg("-c").arg(&config);
        Self::peer(System::Nginx, command, port, dir).await
    }

    /// relayhub only: a counter or gauge from `/metrics`.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let http = relayhub_core::http_client::client().map_err(anyhow::Error::msg)?;
        let text = http.get(format!("http://{}/metrics", self.addr)).send().await?.text().await?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .with_context(|| format!("{name} is not in /metrics"))
    }

    /// Starts a peer quietly and waits until it listens on `port`.
    pub async fn peer(system: System, mut command: Command, port: u16, dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", system.name()))?;
        let addr = format!("127.0.0.1:{port}");
        wait_listening(&addr).await?;
        Ok(Self { system, addr, child, _dir: dir, token: String::new(), api_key: String::new() })
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The server's resident memory, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self.pid().context("the server has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")
    }
}

async fn wait_listening(addr: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if tokio::time::Instant::now() > deadline {
            bail!("{addr} never started listening");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
