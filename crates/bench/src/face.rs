//! `face`: seed 004's face identification. The same unit vectors are
//! enrolled in relayhub (`/face_api/enrol`, one passenger each, durable
//! per call) and in ChromaDB (the seed's vector database, its own server
//! process, in batches), and the same queries — an enrolled face plus
//! noise, as another photo of the same person is — are identified over
//! HTTP, `clients` at a time: queries per second, latency, and recall@1
//! against an exact search computed here. For relayhub, the index's
//! memory per face (its own count, from `/metrics`) and the server's
//! resident memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::servers::{Server, System};
use crate::stats::Outcome;

/// Parameters of `face`.
#[derive(Debug, Clone, Copy)]
pub struct FaceParams {
    pub faces: usize,
    pub queries: usize,
    pub dimension: usize,
    /// Requests in flight at once.
    pub clients: usize,
}

/// The standard deviation of the noise per coordinate added to a face to
/// make a query: at 128 dimensions a query is about 0.23 from its face,
/// as another photo of the same person is with dlib's model (0.24 for
/// two photos of one man in the test fixtures).
const NOISE: f32 = 0.02;

/// A small deterministic generator (splitmix64): the same vectors on every
/// run and for every system.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A standard normal number (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u = ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let v = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// The enrolled faces and the queries, each query with the index of the
/// face nearest to it by exact search.
pub struct Data {
    faces: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
    truth: Vec<usize>,
}

impl Data {
    pub fn new(p: FaceParams) -> Self {
        let mut numbers = Numbers(20261201);
        let faces: Vec<Vec<f32>> =
            (0..p.faces).map(|_| unit((0..p.dimension).map(|_| numbers.normal()).collect())).collect();
        let queries: Vec<Vec<f32>> = (0..p.queries)
            .map(|_| {
                let face = &faces[(numbers.next() % p.faces as u64) as usize];
                unit(face.iter().map(|x| x + NOISE * numbers.normal()).collect())
            })
            .collect();
        let truth = exact(&faces, &queries);
        Self { faces, queries, truth }
    }
}

/// The nearest face of each query, by a scan of every face, on every core.
fn exact(faces: &[Vec<f32>], queries: &[Vec<f32>]) -> Vec<usize> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = queries.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = queries
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|q| {
                            let distance = |f: &Vec<f32>| f.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
                            (0..faces.len())
                                .min_by(|&a, &b| distance(&faces[a]).total_cmp(&distance(&faces[b])))
                                .unwrap_or(0)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap_or_default()).collect()
    })
}

/// A system under test: how a face is enrolled and a query asked.
#[async_trait::async_trait]
trait Faces: Send + Sync {
    /// Enrols every face; face `i` is named `i`.
    async fn enrol(&self, faces: &[Vec<f32>], clients: usize) -> anyhow::Result<()>;
    /// The name of the nearest face.
    async fn identify(&self, query: &[f32]) -> anyhow::Result<usize>;
}

struct Relayhub {
    http: reqwest::Client,
    base: String,
    token: String,
    /// Passenger ids, by face.
    users: std::sync::Mutex<Vec<String>>,
}

impl Relayhub {
    /// A passenger for face `i`, then the face; the passenger's id.
    async fn enrol_one(&self, i: usize, face: &[f32]) -> anyhow::Result<(usize, String)> {
        let user: Value = self
            .http
            .post(format!("{}/base_api/admin/user", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"name": format!("p{i}")}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let user = user["id"].as_str().context("a passenger id")?.to_owned();
        self.http
            .post(format!("{}/face_api/enrol", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"user_id": user, "embedding": face}))
            .send()
            .await?
            .error_for_status()?;
        Ok((i, user))
    }
}

#[async_trait::async_trait]
impl Faces for Relayhub {
    async fn enrol(&self, faces: &[Vec<f32>], clients: usize) -> anyhow::Result<()> {
        // One passenger per face, then the face: two durable calls each.
        let next = AtomicUsize::new(0);
        let workers = (0..clients).map(|_| async {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(face) = faces.get(i) else { return anyhow::Ok(done) };
                done.push(self.enrol_one(i, face).await?);
            }
        });
        let mut users = vec![String::new(); faces.len()];
        for worker in futures_util::future::join_all(workers).await {
            for (i, user) in worker? {
                users[i] = user;
            }
        }
        *self.users.lock().unwrap_or_else(|e| e.into_inner()) = users;
        Ok(())
    }

    async fn identify(&self, query: &[f32]) -> anyhow::Result<usize> {
        let response = self
            .http
            .post(format!("{}/face_api/identify", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"embedding": query}))
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(usize::MAX);
        }
        let found: Value = response.error_for_status()?.json().await?;
        let user = found["user_id"].as_str().context("a user id")?;
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        Ok(users.iter().position(|u| u == user).unwrap_or(usize::MAX))
    }
}

struct Chroma {
    http: reqwest::Client,
    collection: String,
}

#[async_trait::async_trait]
impl Faces for Chroma {
    async fn enrol(&self, faces: &[Vec<f32>], _clients: usize) -> anyhow::Result<()> {
        for (n, batch) in faces.chunks(5000).enumerate() {
            let ids: Vec<String> = (0..batch.len()).map(|i| (n * 5000 + i).to_string()).collect();
            self.http
                .post(format!("{}/add", self.collection))
                .json(&json!({"ids": ids, "embeddings": batch}))
                .send()
                .await?
                .error_for_status()?;
        }
        Ok(())
    }

    async fn identify(&self, query: &[f32]) -> anyhow::Result<usize> {
        let found: Value = self
            .http
            .post(format!("{}/query", self.collection))
            .json(&json!({"query_embeddings": [query], "n_results": 1, "include": ["distances"]}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(found["ids"][0][0].as_str().and_then(|id| id.parse().ok()).unwrap_or(usize::MAX))
    }
}

/// ChromaDB's server (`chroma run`): `CHROMA_BIN`, else `chroma` on the
/// PATH (PyPI `chromadb`).
async fn chroma() -> anyhow::Result<(Server, Chroma)> {
    let bin = std::env::var_os("CHROMA_BIN").unwrap_or_else(|| "chroma".into());
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut command = tokio::process::Command::new(&bin);
    command.args(["run", "--host", "127.0.0.1", "--port", &port.to_string(), "--path"]).arg(dir.path());
    let server = Server::peer(System::Chroma, command, port, dir)
        .await
        .with_context(|| format!("{} (pip install chromadb, or set CHROMA_BIN)", bin.to_string_lossy()))?;
    let http = http_client()?;
    let base = format!("http://{}/api/v2/tenants/default_tenant/databases/default_database/collections", server.addr);
    // Its defaults: HNSW, 16 neighbours, ef_search 100; squared L2 as relayhub.
    let created: Value = http
        .post(&base)
        .json(&json!({"name": "faces", "configuration": {"hnsw": {"space": "l2"}}}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"].as_str().context("a collection id")?;
    Ok((server, Chroma { http, collection: format!("{base}/{id}") }))
}

async fn relayhub(p: FaceParams, config: &std::path::Path) -> anyhow::Result<(Server, Relayhub)> {
    // Any distance identifies: recall measures the index, not the threshold.
    std::fs::write(config, format!("[rail.face]\ndimension = {}\nmax_per_user = 1\nthreshold = 2.0\n", p.dimension))?;
    let server = Server::start(System::Relayhub, &["--config".into(), config.display().to_string()]).await?;
    let http = http_client()?;
    let faces = Relayhub {
        http,
        base: format!("http://{}", server.addr),
        token: server.token.clone(),
        users: std::sync::Mutex::new(Vec::new()),
    };
    Ok((server, faces))
}

/// The platform's HTTP client (its TLS set-up), with room for slow calls.
fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(relayhub_core::http_client::builder().timeout(Duration::from_secs(60)).build()?)
}

/// Every query, `clients` at a time: latencies (µs), seconds, and how many
/// found the exact nearest face.
async fn drive(system: &dyn Faces, data: &Data, clients: usize) -> anyhow::Result<(Histogram<u64>, f64, usize)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let runs = (0..clients).map(|_| {
        let next = next.clone();
        async move {
            let mut latency = Histogram::<u64>::new(3)?;
            let mut right = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(query) = data.queries.get(i) else { break };
                let sent = Instant::now();
                let found = system.identify(query).await?;
                let _ = latency.record(sent.elapsed().as_micros().max(1) as u64);
                right += usize::from(found == data.truth[i]);
            }
            anyhow::Ok((latency, right))
        }
    });
    let mut latency = Histogram::<u64>::new(3)?;
    let mut right = 0;
    for result in futures_util::future::join_all(runs).await {
        let (h, r) = result?;
        latency.add(&h).ok();
        right += r;
    }
    Ok((latency, started.elapsed().as_secs_f64(), right))
}

pub async fn face(system: System, p: FaceParams, data: &Data) -> anyhow::Result<Outcome> {
    let config = tempfile::tempdir()?;
    let (server, faces): (Server, Box<dyn Faces>) = match system {
        System::Relayhub => {
            let (server, faces) = relayhub(p, &config.path().join("relayhub.toml")).await?;
            (server, Box::new(faces))
        }
        System::Chroma => {
            let (server, faces) = chroma().await?;
            (server, Box::new(faces))
        }
        other => bail!("{} is not a vector index", other.name()),
    };
    let rss_before = server.rss_kib()?;
    let started = Instant::now();
    faces.enrol(&data.faces, p.clients).await?;
    let enrol_per_s = (data.faces.len() as f64 / started.elapsed().as_secs_f64()).round();
    // Both index as they go; ChromaDB may still be folding its log in.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drive(faces.as_ref(), data, p.clients).await?; // warm-up
    let (latency, secs, right) = drive(faces.as_ref(), data, p.clients).await?;
    let ms = |q: f64| (latency.value_at_quantile(q) as f64 / 1000.0 * 100.0).round() / 100.0;
    let rss_after = server.rss_kib()?;
    let index_bytes = match system {
        System::Relayhub => Some(server.metric("relayhub_rail_face_index_bytes").await?),
        _ => None,
    };
    Ok(Outcome {
        system: system.name().to_owned(),
        msgs_per_s: Some((data.queries.len() as f64 / secs).round()),
        p50_ms: Some(ms(0.5)),
        p99_ms: Some(ms(0.99)),
        recall_at_1: Some((right as f64 / data.queries.len() as f64 * 1000.0).round() / 1000.0),
        enrol_per_s: Some(enrol_per_s),
        index_bytes_per_face: index_bytes.map(|b| (b / data.faces.len() as f64).round()),
        rss_bytes_per_face: Some(
            ((rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / data.faces.len() as f64).round(),
        ),
        rss_mib: Some((rss_after as f64 / 1024.0).round()),
        fsync: match system {
            System::Relayhub => {
                "fsync before every enrol's 200 (one face per call, two calls with its passenger)".into()
            }
            _ => "write-ahead log per add batch (5,000 faces per call)".into(),
        },
        ..Outcome::default()
    })
}
