//! How nodes sharing one database learn of each other's commits: every
//! transaction that changes something a connection may wait for sends a
//! NOTIFY on one channel, delivered by PostgreSQL to every listening node
//! at commit, in commit order. The committing node reports the change to its
//! own hub directly (with the messages themselves); the others get a small
//! payload and read what they need.

use std::sync::Arc;
use std::time::Duration;

use relayhub_core::ids::{DevicePk, LicensePk};
use relayhub_relay::store::{RelayEvent, RelayEvents};
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use crate::error::SqlResult;
use relayhub_core::store::StoreResult;

/// The one channel.
pub(crate) const CHANNEL: &str = "relayhub_events";

/// An event as it crosses nodes: `<node>|<kind>|<number>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    Queued(DevicePk),
    Published(LicensePk),
    Unbound(DevicePk),
    Settings(DevicePk),
    Connected(DevicePk),
}

impl Wire {
    pub(crate) fn encode(self, node: &str) -> String {
        let (kind, n) = match self {
            Wire::Queued(d) => ('q', d.0),
            Wire::Published(l) => ('p', l.0),
            Wire::Unbound(d) => ('u', d.0),
            Wire::Settings(d) => ('s', d.0),
            Wire::Connected(d) => ('c', d.0),
        };
        format!("{node}|{kind}|{n}")
    }

    pub(crate) fn decode(payload: &str) -> Option<(&str, Wire)> {
        let mut parts = payload.split('|');
        let (node, kind, n) = (parts.next()?, parts.next()?, parts.next()?.parse().ok()?);
        let wire = match kind {
            "q" => Wire::Queued(DevicePk(n)),
            "p" => Wire::Published(LicensePk(n)),
            "u" => Wire::Unbound(DevicePk(n)),
            "s" => Wire::Settings(DevicePk(n)),
            "c" => Wire::Connected(DevicePk(n)),
            _ => return None,
        };
        Some((node, wire))
    }

    /// What this node's hub makes of another node's event.
    fn into_event(self) -> RelayEvent {
        match self {
            Wire::Queued(device) => RelayEvent::Queued { device, first_seq: 0, messages: Vec::new() },
            Wire::Published(license) => RelayEvent::Published { license },
            Wire::Unbound(device) => RelayEvent::Unbound { device },
            Wire::Settings(device) => RelayEvent::Settings { device, settings: None },
            Wire::Connected(device) => RelayEvent::ConnectedElsewhere { device },
        }
    }
}

/// Sends the notifications of a transaction's events (delivered at commit).
pub(crate) async fn send(tx: &mut Transaction<'_, Postgres>, node: &str, wires: &[Wire]) -> StoreResult<()> {
    if wires.is_empty() {
        return Ok(());
    }
    let mut payloads: Vec<String> = wires.iter().map(|w| w.encode(node)).collect();
    payloads.sort_unstable();
    payloads.dedup();
    sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
        .bind(CHANNEL)
        .bind(payloads)
        .execute(&mut **tx)
        .await
        .sql()?;
    Ok(())
}

/// Listens for other nodes' events until `stop`. The link reconnects by
/// itself; after any gap every connection is told to re-read
/// ([`RelayEvent::Resync`]), since notifications sent meanwhile are lost.
pub(crate) async fn listen(pool: PgPool, node: String, events: Arc<dyn RelayEvents>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            () = stop.cancelled() => return,
            connected = connected => match connected {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(%err, retry_in = ?backoff, "cannot listen to other nodes yet");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        if !first {
            tracing::info!("listening to other nodes again; every connection re-reads its state");
            events.emit(RelayEvent::Resync);
        }
        first = false;
        backoff = Duration::from_millis(100);
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = listener.try_recv() => next,
            };
            match next {
                Ok(Some(notification)) => match Wire::decode(notification.payload()) {
                    Some((from, wire)) if from != node => events.emit(wire.into_event()),
                    Some(_) => {} // our own: already reported with its data
                    None => tracing::warn!(payload = notification.payload(), "unknown notification"),
                },
                Ok(None) => events.emit(RelayEvent::Resync),
                Err(err) => {
                    tracing::warn!(%err, "lost the link to other nodes; reconnecting");
                    break;
                }
            }
        }
    }
}

/// How often a node says it is alive; 30 s without a beat and its devices
/// count as offline (see `devices.rs`).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Keeps this node's row fresh until `stop`, and forgets nodes gone for a
/// day.
pub(crate) async fn heartbeat(pool: PgPool, node: String, stop: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let beat = sqlx::query(
            "INSERT INTO nodes (id, started_at, seen_at) VALUES ($1, now(), now())
             ON CONFLICT (id) DO UPDATE SET seen_at = now()",
        )
        .bind(&node)
        .execute(&pool)
        .await;
        if let Err(err) = beat {
            tracing::warn!(%err, "node heartbeat failed");
            continue;
        }
        let forget = sqlx::query(
            "WITH gone AS (DELETE FROM nodes WHERE seen_at < now() - interval '1 day' RETURNING id)
             UPDATE devices SET online_node = NULL, online_conn = NULL WHERE online_node IN (SELECT id FROM gone)",
        )
        .execute(&pool)
        .await;
        if let Err(err) = forget {
            tracing::debug!(%err, "could not forget old nodes");
        }
    }
    // Leaving cleanly: this node's devices are offline at once.
    let _ = sqlx::query("DELETE FROM nodes WHERE id = $1").bind(&node).execute(&pool).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        for wire in [
            Wire::Queued(DevicePk(7)),
            Wire::Published(LicensePk(1)),
            Wire::Unbound(DevicePk(9)),
            Wire::Settings(DevicePk(3)),
            Wire::Connected(DevicePk(4)),
        ] {
            assert_eq!(Wire::decode(&wire.encode("n1")), Some(("n1", wire)));
        }
        assert_eq!(Wire::decode("n1|x|1"), None);
        assert_eq!(Wire::decode("garbage"), None);
    }
}
