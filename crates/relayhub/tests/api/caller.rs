//! A call-signaling client (seed 003's protocol) for the tests.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::helpers::{PATIENCE, Socket, TestApp, server_close};

/// A call-signaling client (seed 003's protocol) over a real WebSocket.
pub struct Caller {
    ws: Socket,
    pub user: String,
}

impl Caller {
    /// Connects to `/ws/signal` with this app's API key, as `user`.
    pub async fn connect(app: &TestApp, user: &str) -> Caller {
        Self::open(app, user, Some(&app.api_key)).await.expect("signal socket")
    }

    /// Connects with `key` (or none); `Err` carries a refusal's status.
    pub async fn open(app: &TestApp, user: &str, key: Option<&str>) -> Result<Caller, u16> {
        Self::open_at(&app.addr.to_string(), user, key).await
    }

    /// Connects to the server (or proxy) at `addr` (`host:port`).
    pub async fn open_at(addr: &str, user: &str, key: Option<&str>) -> Result<Caller, u16> {
        Self::open_with(addr, user, key, None).await
    }

    /// Connects as a signed-in user (`signal.require_user`): `user` is the
    /// user's id, `access` its access token, sent as `Authorization: Bearer`.
    pub async fn signed_in(addr: &str, user: i64, access: &str) -> Result<Caller, u16> {
        Self::open_with(addr, &user.to_string(), None, Some(access)).await
    }

    /// Connects with an app key and an access token, each if given.
    pub async fn open_with(addr: &str, user: &str, key: Option<&str>, access: Option<&str>) -> Result<Caller, u16> {
        let mut request = format!("ws://{addr}/ws/signal").into_client_request().unwrap();
        if let Some(key) = key {
            request.headers_mut().insert("x-api-key", key.parse().unwrap());
        }
        if let Some(access) = access {
            request.headers_mut().insert("authorization", format!("Bearer {access}").parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Caller { ws, user: user.to_owned() }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
            Err(other) => panic!("signal connect failed: {other}"),
        }
    }

    /// Sends `{"route":…,"userId":<user>,"data":…}`.
    pub async fn send(&mut self, route: &str, data: Value) {
        let frame = json!({"route": route, "userId": self.user, "data": data});
        self.ws.send(Message::text(frame.to_string())).await.expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.expect("send");
    }

    /// The next text frame: JSON, or `{"text": "PONG"}` for plain text.
    pub async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("a frame in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).unwrap_or_else(|_| json!({"text": text.as_str()}));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("{}: expected a frame, got {other:?}", self.user),
            }
        }
    }

    /// The next frame, which must have this route; returns its data.
    pub async fn expect(&mut self, route: &str) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["route"], route, "{}: expected {route}, got {frame}", self.user);
        frame["data"].clone()
    }

    /// `ADD_USER` and its `userConnect`.
    pub async fn join(app: &TestApp, user: &str) -> Caller {
        Self::join_at(&app.addr.to_string(), &app.api_key, user).await
    }

    /// `ADD_USER` at `addr` with `key`, and its `userConnect`.
    pub async fn join_at(addr: &str, key: &str, user: &str) -> Caller {
        let mut caller = Self::open_at(addr, user, Some(key)).await.expect("signal socket");
        caller.send("ADD_USER", json!({"name": format!("{user} name"), "photo": "p.png", "device": "android"})).await;
        caller.expect("userConnect").await;
        caller
    }

    /// Sends `PING` and returns every frame that came before the `PONG`.
    pub async fn sync(&mut self) -> Vec<Value> {
        self.send_text("PING").await;
        let mut before = Vec::new();
        loop {
            let frame = self.next().await;
            if frame["text"] == "PONG" {
                return before;
            }
            before.push(frame);
        }
    }

    /// Waits for the server to close the socket.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        server_close(&mut self.ws).await
    }

    /// Drops the connection abruptly (a phone losing its network).
    pub fn drop_connection(self) {
        drop(self.ws);
    }
}
