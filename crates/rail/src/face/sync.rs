//! Keeps this node's face index in step with the store: it is rebuilt from
//! the store at start-up (and after the link to other nodes was lost), and
//! every enrolment and forgetting announced on the bus, from this node or
//! another, is applied in the order announced, by one task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use relayhub_core::bus::{Bus, Delivery};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::FaceEvent;
use super::index::FaceIndex;
use crate::store::FaceStore;

/// Faces read from the store per query during a rebuild.
const REBUILD_BATCH: usize = 2000;

enum Change {
    Event(FaceEvent),
    Resync,
    /// Answered once every change queued before it is applied.
    Barrier(oneshot::Sender<()>),
}

/// The handle handlers use: whether the index is loaded, and a way to wait
/// until what was announced is applied.
#[derive(Clone)]
pub struct FaceSync {
    changes: mpsc::UnboundedSender<Change>,
    ready: Arc<AtomicBool>,
}

/// The task's end of the queue, until [`run`] takes it.
pub struct FaceChanges(mpsc::UnboundedReceiver<Change>);

impl FaceSync {
    /// Subscribes to the bus; the changes wait for [`run`].
    pub fn subscribe(bus: &Bus) -> (Self, FaceChanges) {
        let (changes, receiver) = mpsc::unbounded_channel();
        let sender = changes.clone();
        // Runs on the publishing thread: only queues.
        bus.subscribe::<FaceEvent>(move |delivery| {
            let change = match delivery {
                Delivery::Event(event) => Change::Event(event.clone()),
                Delivery::Resync => Change::Resync,
            };
            let _ = sender.send(change);
        });
        (Self { changes, ready: Arc::new(AtomicBool::new(false)) }, FaceChanges(receiver))
    }

    /// Whether the index has been loaded from the store.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Waits until every change announced before this call is in the index.
    pub async fn settled(&self) {
        let (done, wait) = oneshot::channel();
        if self.changes.send(Change::Barrier(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Loads the index from the store, then applies changes until `stop`.
pub async fn run(
    sync: FaceSync,
    FaceChanges(mut changes): FaceChanges,
    index: Arc<FaceIndex>,
    store: Arc<dyn FaceStore>,
    stop: CancellationToken,
) {
    rebuild_until_done(&index, store.as_ref(), &stop).await;
    sync.ready.store(true, Ordering::Release);
    loop {
        let change = tokio::select! {
            change = changes.recv() => match change { Some(change) => change, None => return },
            () = stop.cancelled() => return,
        };
        match change {
            Change::Barrier(done) => {
                let _ = done.send(());
            }
            Change::Resync => rebuild_until_done(&index, store.as_ref(), &stop).await,
            Change::Event(event) => apply(&index, store.as_ref(), event).await,
        }
    }
}

async fn apply(index: &FaceIndex, store: &dyn FaceStore, event: FaceEvent) {
    match event {
        FaceEvent::Forgotten { license, user_id } => {
            index.forget(license, user_id);
        }
        FaceEvent::Enrolled { license, id, user_id, embedding } => {
            if index.contains(license, id) {
                return;
            }
            // Another node's enrolment: the vector is in the store (unless
            // it was forgotten since, which a later event says).
            let embedding = match embedding {
                Some(embedding) => embedding,
                None => match store.face(id).await {
                    Ok(Some(face)) => face.embedding,
                    Ok(None) => return,
                    Err(err) => {
                        tracing::warn!(%err, "reading an enrolled face failed; it is found after the next rebuild");
                        return;
                    }
                },
            };
            if let Err(err) = index.insert(license, id, user_id, &embedding) {
                tracing::error!(%err, "indexing a face failed");
            }
        }
    }
}

async fn rebuild_until_done(index: &FaceIndex, store: &dyn FaceStore, stop: &CancellationToken) {
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        match rebuild(index, store).await {
            Ok(count) => {
                tracing::info!(faces = count, "face index loaded");
                return;
            }
            Err(err) => tracing::warn!(%err, "loading the face index failed; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => return,
        }
        pause = (pause * 2).min(std::time::Duration::from_secs(10));
    }
}

async fn rebuild(index: &FaceIndex, store: &dyn FaceStore) -> Result<usize, String> {
    index.clear();
    let (mut after, mut count) = (None, 0);
    loop {
        let batch = store.faces_after(after, REBUILD_BATCH).await.map_err(|e| e.to_string())?;
        for face in &batch {
            // One bad row (say, enrolled under another rail.face.dimension)
            // must not keep every other face out of the index.
            if let Err(err) = index.insert(face.license, face.id, face.user_id, &face.embedding) {
                tracing::warn!(%err, face = %face.id, "a stored face is left out of the index");
            }
        }
        count += batch.len();
        match batch.last() {
            Some(last) if batch.len() == REBUILD_BATCH => after = Some(last.id),
            _ => return Ok(count),
        }
    }
}
