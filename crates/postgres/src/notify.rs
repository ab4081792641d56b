//! How nodes sharing one database learn of each other's commits: every
//! transaction that publishes events sends them with NOTIFY on one channel,
//! delivered by PostgreSQL to every listening node at commit, in commit
//! order. The committing node publishes on its own bus directly (with the
//! events' full data); the others receive each event's wire form, tagged by
//! its topic, and publish that on theirs.
//!
//! A payload is `<node>|<topic>|i|<wire>`, or `<node>|<topic>|s|<id>` when
//! the wire form is too large for NOTIFY (8000 bytes): it is then written
//! to `bus_spill` in the same transaction and read by the receivers.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use relayhub_core::bus::{Bus, Event, Remote};
use relayhub_core::store::StoreResult;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use crate::error::SqlResult;

/// The platform module's tables (see [`crate::schema`]).
pub(crate) const SCHEMA: crate::schema::Schema = crate::schema::Schema {
    module: "platform",
    steps: &[
        crate::schema::Step { sql: include_str!("../migrations/platform/0001_nodes.sql"), was: Some(1) },
        crate::schema::Step { sql: include_str!("../migrations/platform/0002_bus_spill.sql"), was: Some(2) },
    ],
};

/// The one channel.
pub(crate) const CHANNEL: &str = "relayhub_events";

/// Wire forms longer than this go through `bus_spill`.
const INLINE_MAX: usize = 7000;

/// How long spilled payloads are kept for nodes that read them late.
const SPILL_KEPT: &str = "10 minutes";

/// Sends the wire forms of a transaction's events (delivered at commit).
pub(crate) async fn send(tx: &mut Transaction<'_, Postgres>, node: &str, events: &[Event]) -> StoreResult<()> {
    let wires: Vec<(&str, String)> = events.iter().filter_map(|e| Some((e.topic(), e.wire()?))).collect();
    let wires: Vec<(&str, &str)> = wires.iter().map(|(t, w)| (*t, w.as_str())).collect();
    send_wires(tx, node, &wires).await
}

async fn send_wires(tx: &mut Transaction<'_, Postgres>, node: &str, wires: &[(&str, &str)]) -> StoreResult<()> {
    let mut payloads: Vec<String> = Vec::with_capacity(wires.len());
    for (topic, wire) in wires {
        let payload = if wire.len() <= INLINE_MAX {
            format!("{node}|{topic}|i|{wire}")
        } else {
            let id: i64 = sqlx::query_scalar("INSERT INTO bus_spill (payload) VALUES ($1) RETURNING id")
                .bind(*wire)
                .fetch_one(&mut **tx)
                .await
                .sql()?;
            format!("{node}|{topic}|s|{id}")
        };
        // Repeats in a row say nothing new (PostgreSQL would fold them anyway).
        if payloads.last() != Some(&payload) {
            payloads.push(payload);
        }
    }
    if payloads.is_empty() {
        return Ok(());
    }
    // `unnest` yields the array in order: notifications keep the events' order.
    sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
        .bind(CHANNEL)
        .bind(payloads)
        .execute(&mut **tx)
        .await
        .sql()?;
    Ok(())
}

/// The bus's link to the other nodes, for events no transaction carries.
pub(crate) struct PgRemote {
    pub pool: PgPool,
    pub node: Arc<str>,
    /// One send at a time: a node's broadcasts reach the others in order.
    pub order: Arc<tokio::sync::Mutex<()>>,
}

impl Remote for PgRemote {
    fn send(&self, events: Vec<(&'static str, String)>) -> BoxFuture<'static, StoreResult<()>> {
        let (pool, node, order) = (self.pool.clone(), self.node.clone(), self.order.clone());
        async move {
            let _turn = order.lock().await;
            let mut tx = pool.begin().await.sql()?;
            let wires: Vec<(&str, &str)> = events.iter().map(|(t, w)| (*t, w.as_str())).collect();
            send_wires(&mut tx, &node, &wires).await?;
            tx.commit().await.sql()
        }
        .boxed()
    }
}

/// One notification, parsed.
struct Payload<'a> {
    node: &'a str,
    topic: &'a str,
    spilled: bool,
    body: &'a str,
}

fn parse(payload: &str) -> Option<Payload<'_>> {
    let mut parts = payload.splitn(4, '|');
    let (node, topic, kind, body) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let spilled = match kind {
        "i" => false,
        "s" => true,
        _ => return None,
    };
    Some(Payload { node, topic, spilled, body })
}

/// Listens for other nodes' events until `stop`. The link reconnects by
/// itself; after any gap every subscriber is told to re-read
/// ([`Bus::resync`]), since notifications sent meanwhile are lost.
pub(crate) async fn listen(pool: PgPool, node: String, bus: Bus, stop: CancellationToken) {
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
            tracing::info!("listening to other nodes again; every subscriber re-reads its state");
            bus.resync();
        }
        first = false;
        backoff = Duration::from_millis(100);
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = listener.try_recv() => next,
            };
            match next {
                Ok(Some(notification)) => deliver(&pool, &node, &bus, notification.payload()).await,
                Ok(None) => bus.resync(),
                Err(err) => {
                    tracing::warn!(%err, "lost the link to other nodes; reconnecting");
                    break;
                }
            }
        }
    }
}

async fn deliver(pool: &PgPool, node: &str, bus: &Bus, raw: &str) {
    let Some(payload) = parse(raw) else {
        tracing::warn!(payload = raw, "unknown notification");
        return;
    };
    if payload.node == node {
        return; // our own: already published with its data
    }
    if !payload.spilled {
        bus.receive(payload.topic, payload.body);
        return;
    }
    let Ok(id) = payload.body.parse::<i64>() else { return };
    let body: Result<Option<String>, _> =
        sqlx::query_scalar("SELECT payload FROM bus_spill WHERE id = $1").bind(id).fetch_optional(pool).await;
    match body {
        Ok(Some(body)) => bus.receive(payload.topic, &body),
        Ok(None) => tracing::warn!(id, "a spilled event is gone"),
        Err(err) => {
            // Lost: let every subscriber re-read rather than miss it.
            tracing::warn!(%err, id, "could not read a spilled event");
            bus.resync();
        }
    }
}

/// How often a node says it is alive; 30 s without a beat and its devices
/// count as offline (see `devices.rs`).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Keeps this node's row fresh until `stop`, forgets nodes gone for a day
/// and spilled events nobody needs any more.
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
        let spill = sqlx::query(&format!("DELETE FROM bus_spill WHERE created_at < now() - interval '{SPILL_KEPT}'"))
            .execute(&pool)
            .await;
        if let Err(err) = forget.and(spill) {
            tracing::debug!(%err, "could not forget old nodes or spilled events");
        }
    }
    // Leaving cleanly: this node's devices are offline at once.
    let _ = sqlx::query("DELETE FROM nodes WHERE id = $1").bind(&node).execute(&pool).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_node_topic_and_body_which_may_hold_bars() {
        let p = parse("node-1|signal|i|{\"a\":\"x|y\"}").unwrap();
        assert_eq!((p.node, p.topic, p.spilled, p.body), ("node-1", "signal", false, "{\"a\":\"x|y\"}"));
        assert!(parse("node-1|relay|s|42").unwrap().spilled);
        assert!(parse("node-1|relay|x|42").is_none());
        assert!(parse("garbage").is_none());
    }
}
