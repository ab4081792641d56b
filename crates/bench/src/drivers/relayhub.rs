//! relayhub: devices on `/ws/device`, the back-office on the HTTP API.

use std::sync::Arc;

use anyhow::{Context, bail};
use async_trait::async_trait;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{DeviceTask, Driver, Producer};
use crate::payload::{self, Stamp};
use crate::servers::Server;
use crate::stats::Log;

pub struct Relayhub {
    addr: String,
    /// Each license's number and bearer token; device and producer `i`
    /// use license `i % len`.
    licenses: Vec<(String, String)>,
    api_key: String,
    http: reqwest::Client,
}

fn device_id(index: usize) -> String {
    format!("dev-{index:05}")
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: Option<&'a str>,
    data: Option<Stamp>,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Relayhub {
    pub fn new(server: &Server, licenses: Vec<(String, String)>) -> anyhow::Result<Self> {
        anyhow::ensure!(!licenses.is_empty(), "at least one license");
        Ok(Self {
            addr: server.addr.clone(),
            licenses,
            api_key: server.api_key.clone(),
            http: relayhub_core::http_client::client().map_err(anyhow::Error::msg)?,
        })
    }

    /// License `index % len`: its number and token.
    fn license(&self, index: usize) -> &(String, String) {
        &self.licenses[index % self.licenses.len()]
    }

    async fn connect(&self, index: usize) -> anyhow::Result<Socket> {
        let url = format!(
            "ws://{}/ws/device?api_key={}&device_id={}&license={}",
            self.addr,
            self.api_key,
            device_id(index),
            self.license(index).0
        );
        // tungstenite zeroes its whole read buffer before every read: its
        // 128 KiB default cost the client a tenth of the machine here.
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(config), false).await.context("device connect")?;
        match ws.next().await {
            Some(Ok(Message::Text(hello))) if hello.contains("\"hello\"") => Ok(ws),
            other => bail!("expected hello, got {other:?}"),
        }
    }
}

#[async_trait]
impl Driver for Relayhub {
    async fn device(&self, index: usize, expected: u64) -> anyhow::Result<DeviceTask> {
        let mut ws = self.connect(index).await?;
        Ok(tokio::spawn(async move {
            let mut log = Log::new(expected);
            let mut ids: Vec<String> = Vec::new();
            while !log.complete() {
                // Take every frame already here, then acknowledge them all
                // in one frame (each message is acknowledged).
                let mut next = ws.next().await;
                loop {
                    match next {
                        Some(Ok(Message::Text(text))) => {
                            let frame: Frame = serde_json::from_str(&text)?;
                            if frame.kind == "message" {
                                ids.extend(frame.id.map(str::to_owned));
                                log.record(&frame.data.context("a message without data")?);
                            }
                        }
                        Some(Ok(_)) => {}
                        other => bail!("device {index} lost its socket: {other:?}"),
                    }
                    match ws.next().now_or_never() {
                        Some(more) => next = more,
                        None => break,
                    }
                }
                if !ids.is_empty() {
                    let ack = format!(r#"{{"type":"ack","ids":{}}}"#, serde_json::to_string(&ids)?);
                    ws.send(Message::text(ack)).await?;
                    ids.clear();
                }
            }
            let _ = ws.close(None).await;
            Ok(log)
        }))
    }

    async fn producer(&self, index: usize) -> anyhow::Result<Arc<dyn Producer>> {
        Ok(Arc::new(HttpProducer {
            url: format!("http://{}/api/v1/messages", self.addr),
            token: self.license(index).1.clone(),
            http: self.http.clone(),
        }))
    }

    async fn publish_up(&self, index: usize, records: u64) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
        let ws = self.connect(index).await?;
        Ok(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let sender = async move {
                for i in 0..records {
                    let data = payload::make(index, i, payload::now_ns());
                    tx.feed(Message::text(format!(r#"{{"type":"publish","ref":"r{i}","data":{data}}}"#))).await?;
                }
                tx.flush().await?;
                anyhow::Ok(tx)
            };
            let receiver = async {
                let mut published = 0;
                while published < records {
                    match rx.next().await {
                        Some(Ok(Message::Text(text))) if text.contains("\"published\"") => published += 1,
                        Some(Ok(Message::Text(text))) if text.contains("\"error\"") => bail!("refused: {text}"),
                        Some(Ok(_)) => {}
                        other => bail!("device {index} lost its socket: {other:?}"),
                    }
                }
                Ok(())
            };
            let (tx, ()) = tokio::try_join!(sender, receiver)?;
            let mut ws = tx.reunite(rx)?;
            let _ = ws.close(None).await;
            Ok(())
        }))
    }

    async fn drain(&self, devices: usize, records: u64) -> anyhow::Result<JoinHandle<anyhow::Result<Vec<Log>>>> {
        // The uplink runs on one license, whose inbox holds every record.
        let (http, token, addr) = (self.http.clone(), self.license(0).1.clone(), self.addr.clone());
        Ok(tokio::spawn(async move {
            #[derive(Deserialize)]
            struct Record {
                id: String,
                data: Stamp,
            }
            #[derive(Deserialize)]
            struct Inbox {
                records: Vec<Record>,
            }
            let mut logs: Vec<Log> = (0..devices).map(|_| Log::new(records)).collect();
            while !logs.iter().all(Log::complete) {
                let page: Inbox = http
                    .get(format!("http://{addr}/api/v1/inbox?limit=1000&wait=1"))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                if page.records.is_empty() {
                    continue;
                }
                let ids: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
                for record in &page.records {
                    logs[record.data.d].record(&record.data);
                }
                http.post(format!("http://{addr}/api/v1/inbox/ack"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "ids": ids }))
                    .send()
                    .await?
                    .error_for_status()?;
            }
            Ok(logs)
        }))
    }
}

/// Posts batches to `POST /api/v1/messages` (all or nothing, 202 once on
/// disk).
struct HttpProducer {
    url: String,
    token: String,
    http: reqwest::Client,
}

#[async_trait]
impl Producer for HttpProducer {
    async fn publish(&self, batch: Vec<(usize, String)>) -> anyhow::Result<()> {
        let mut body = String::with_capacity(batch.len() * (payload::SIZE + 40) + 16);
        body.push_str(r#"{"messages":["#);
        for (n, (device, data)) in batch.iter().enumerate() {
            if n > 0 {
                body.push(',');
            }
            // The payload is JSON already: embed it as is.
            let data: &RawValue = serde_json::from_str(data)?;
            body.push_str(&format!(r#"{{"device_id":"{}","data":{}}}"#, device_id(*device), data.get()));
        }
        body.push_str("]}");
        let response = self.http.post(&self.url).bearer_auth(&self.token).body(body).send().await?;
        if response.status() != 202 {
            bail!("relayhub refused a batch: {} {}", response.status(), response.text().await?);
        }
        Ok(())
    }
}
