//! `proxy`: the registry's reverse proxy (seed 001). One instance — an
//! HTTP server in this process with a 1 KiB and a 1 MiB answer — is
//! reached through relayhub's `/ECK/PROXY` at its public URL, through
//! relayhub over the instance's tunnel (its client in this process too),
//! and through nginx (`proxy_pass`, keep-alive upstream, no buffering), in
//! one run: requests per second and latency for small answers, MiB/s for
//! large ones, the proxy's memory at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use hdrhistogram::Histogram;
use relayhub_registry::tunnel::client::TunnelClient;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::servers::{Server, System};
use crate::stats::Outcome;

/// Parameters of `proxy`.
#[derive(Debug, Clone, Copy)]
pub struct ProxyParams {
    /// Requests for the 1 KiB answer.
    pub small: usize,
    /// Requests for the 1 MiB answer.
    pub large: usize,
    /// Requests in flight at once.
    pub clients: usize,
}

const SMALL: usize = 1024;
const LARGE: usize = 1024 * 1024;

/// The instance: `/wh/small` and `/wh/large`.
async fn instance() -> anyhow::Result<String> {
    let small = Bytes::from(vec![b's'; SMALL]);
    let large = Bytes::from(vec![b'l'; LARGE]);
    let app = Router::new()
        .route("/wh/small", get(move || std::future::ready(small.clone())))
        .route("/wh/large", get(move || std::future::ready(large.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// How a client asks the proxy under test for `path` of the instance.
#[derive(Clone)]
struct Route {
    url: String,
    headers: Vec<(&'static str, String)>,
    /// relayhub's path header (`None`: the path is in the URL).
    relayhub: bool,
}

impl Route {
    fn request(&self, client: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        let mut request = if self.relayhub {
            client.post(&self.url).header("x-eckwms-target-url", path).header("x-eckwms-target-method", "GET")
        } else {
            client.get(format!("{}{path}", self.url))
        };
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        request
    }
}

/// A relayhub with the registry open to loopback instances and no rate
/// limits, and a device approved for the instance (at its URL, or without
/// one for the tunnel).
async fn relayhub(system: System, instance: &str, config: &std::path::Path) -> anyhow::Result<(Server, Route)> {
    std::fs::write(
        config,
        "[registry]\nallow_private = [\"127.0.0.0/8\"]\n\
         rate_per_key = { per_second = 0, burst = 0 }\nrate_per_address = { per_second = 0, burst = 0 }\n",
    )?;
    let server = Server::start(system, &["--config".into(), config.display().to_string()]).await?;
    let device = uuid::Uuid::new_v4().to_string();
    let mut registration = json!({"device_uuid": device, "instance_id": "bench"});
    if system == System::Relayhub {
        registration["public_url"] = json!(format!("http://{instance}/wh"));
    }
    let http = relayhub_core::http_client::client().map_err(anyhow::Error::msg)?;
    let base = format!("http://{}", server.addr);
    let registered = http
        .post(format!("{base}/ECK/API/DEVICE/REGISTER"))
        .header("x-api-key", &server.api_key)
        .json(&registration)
        .send()
        .await?;
    if !registered.status().is_success() {
        bail!("registering the device: {}", registered.text().await?);
    }
    server.admin(&["registry", "approve", &device])?;
    let headers = vec![("x-api-key", server.api_key.clone()), ("x-device-id", device)];
    Ok((server, Route { url: format!("{base}/ECK/PROXY"), headers, relayhub: true }))
}

/// Opens the instance's tunnel to `server`; cancelled when the run ends.
async fn tunnel(server: &Server, instance: &str, stop: &CancellationToken) -> anyhow::Result<()> {
    let issued = server.admin(&["registry", "instance-token", "bench"])?;
    let client = TunnelClient {
        server: format!("ws://{}/ws/instance", server.addr),
        api_key: server.api_key.clone(),
        instance_id: "bench".into(),
        token: issued["token"].as_str().context("a tunnel token")?.to_owned(),
        local: format!("http://{instance}/wh"),
    };
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let stop = stop.clone();
    tokio::spawn(async move {
        if let Err(err) = client.run(stop, Some(ready_tx)).await {
            eprintln!("    tunnel: {err}");
        }
    });
    tokio::time::timeout(std::time::Duration::from_secs(10), ready).await.context("the tunnel opens")??;
    Ok(())
}

/// `count` requests for `path`, `clients` at a time: the latency of each
/// (µs), the seconds it all took, and how many failed (a wrong status or
/// a body of the wrong length).
async fn drive(route: &Route, path: &str, size: usize, count: usize, clients: usize) -> (Histogram<u64>, f64, u64) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build().expect("an HTTP client");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks = (0..clients).map(|_| {
        let (client, route, next, path) = (client.clone(), route.clone(), next.clone(), path.to_owned());
        tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3).expect("a histogram");
            let mut failed = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let sent = Instant::now();
                let answer = match route.request(&client, &path).send().await {
                    Ok(response) if response.status().is_success() => response.bytes().await.ok(),
                    _ => None,
                };
                if answer.is_some_and(|body| body.len() == size) {
                    let _ = latency.record(sent.elapsed().as_micros().max(1) as u64);
                } else {
                    failed += 1;
                }
            }
            (latency, failed)
        })
    });
    let mut latency = Histogram::<u64>::new(3).expect("a histogram");
    let mut failed = 0;
    for task in futures_util::future::join_all(tasks).await {
        let (h, f) = task.unwrap_or_else(|_| (Histogram::new(3).expect("a histogram"), 1));
        latency.add(&h).ok();
        failed += f;
    }
    (latency, started.elapsed().as_secs_f64(), failed)
}

pub async fn proxy(system: System, p: ProxyParams) -> anyhow::Result<Outcome> {
    let instance = instance().await?;
    let config = tempfile::tempdir()?;
    let stop = CancellationToken::new();
    let _stop_tunnel = stop.clone().drop_guard();
    let (server, route) = match system {
        System::Relayhub => relayhub(system, &instance, &config.path().join("relayhub.toml")).await?,
        System::RelayhubTunnel => {
            let (server, route) = relayhub(system, &instance, &config.path().join("relayhub.toml")).await?;
            tunnel(&server, &instance, &stop).await?;
            (server, route)
        }
        System::Nginx => {
            let server = Server::nginx(&instance).await?;
            let route = Route { url: format!("http://{}/wh", server.addr), headers: Vec::new(), relayhub: false };
            (server, route)
        }
        other => bail!("{} is not a reverse proxy", other.name()),
    };
    // Warm up connections on both sides first.
    drive(&route, "/small", SMALL, p.clients * 4, p.clients).await;
    let (latency, small_secs, small_failed) = drive(&route, "/small", SMALL, p.small, p.clients).await;
    let (_, large_secs, large_failed) = drive(&route, "/large", LARGE, p.large, p.clients.min(8)).await;
    let ms = |q: f64| (latency.value_at_quantile(q) as f64 / 1000.0 * 100.0).round() / 100.0;
    let done = |count: usize, failed: u64| count.saturating_sub(failed as usize) as f64;
    Ok(Outcome {
        system: system.name().to_owned(),
        msgs_per_s: Some((done(p.small, small_failed) / small_secs).round()),
        p50_ms: Some(ms(0.5)),
        p99_ms: Some(ms(0.99)),
        mib_per_s: Some((done(p.large, large_failed) / large_secs).round()),
        rss_mib: Some((server.rss_kib()? as f64 / 1024.0).round()),
        failed: Some(small_failed + large_failed),
        fsync: match system {
            System::Nginx => "forwards; checks nothing".to_owned(),
            _ => "checks the API key and the device's status in its database on every call".to_owned(),
        },
        ..Outcome::default()
    })
}
