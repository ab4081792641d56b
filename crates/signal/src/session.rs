//! One signaling socket: frames in, the socket's outbox out.

use relayhub_core::error::{ApiError, ErrorCode};
use relayhub_core::gateway::{Conn, Event};
use relayhub_core::identity::Account;
use tokio::sync::mpsc;

use crate::Signal;
use crate::protocol::{self, Frame, Route};

/// Runs a socket until it closes; `account`: the signed-in user who opened
/// it, if signaling requires one.
pub async fn run(signal: Signal, mut conn: Conn, account: Option<Account>) {
    let (tx, mut outbox) = mpsc::channel::<String>(signal.config.outbox);
    let id = conn.id();
    signal.attach(id, tx.clone(), conn.close_handle(), account).await;
    let mut users = std::collections::HashSet::new();
    let reason = loop {
        tokio::select! {
            event = conn.recv() => match event {
                Event::Text(text) => match protocol::parse(&text) {
                    Ok(Frame::Ping) => {
                        conn.alive();
                        let _ = tx.try_send("PONG".to_owned());
                    }
                    Ok(Frame::Json(frame)) => {
                        match protocol::admit_user(&mut users, &frame, signal.config.max_users_per_socket) {
                            Ok(()) => signal.handle(id, frame).await,
                            Err(err) => {
                                let route = if frame.route == Route::AddUser { "ADD_USER" } else { "RECONNECT" };
                                signal.refuse(id, Some(route), Some(&frame.user), &err)
                            }
                        }
                    }
                    Err(err) => signal.refuse(id, None, None, &err),
                },
                Event::TooLarge(len) => {
                    let err = ApiError::new(ErrorCode::PAYLOAD_TOO_LARGE, format!("a frame of {len} bytes is over the limit"));
                    signal.refuse(id, None, None, &err);
                }
                Event::Close(reason) => break Some(reason),
                Event::Gone => break None,
                // Binary frames, and any kind of event this protocol does not take.
                _ => {
                    let err = ApiError::new(ErrorCode::UNSUPPORTED_FRAME, "send text frames");
                    signal.refuse(id, None, None, &err);
                }
            },
            Some(text) = outbox.recv() => {
                if conn.send(text).await.is_err() {
                    break None;
                }
            }
        }
    };
    signal.detach(id).await;
    if let Some(reason) = reason {
        conn.close(reason).await;
    }
}
