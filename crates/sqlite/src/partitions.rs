//! Partitions: the relay's per-license data (queues, messages, inbox,
//! settings) spread over several files, each with its own writer thread and
//! group commit, so that more cores commit more messages.
//!
//! Partition 0 is the main file, which also holds licenses, device
//! bindings and the other capabilities' tables; partitions 1.. are
//! `relayhub.p1.db`, … beside it, each attaching the main file to read
//! bindings. A license's partition is recorded when it is created
//! (`licenses.partition_index`) and never changes, so every call of one
//! license goes to one writer: a batch stays atomic, idempotency keys stay
//! unique and the inbox stays one index. What crosses files is binding a
//! device (main file first, then the partition; see `relay::enqueue`) and
//! unbinding it (the binding goes first, then its data).
//!
//! With one partition (the default on two cores) every call goes to the
//! main file as before and nothing here is looked up.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use relayhub_core::bus::Bus;
use relayhub_core::ids::{DevicePk, LicensePk};
use relayhub_core::metrics::CommitMetrics;
use relayhub_core::store::{StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension};

use crate::SqliteStore;
use crate::conn::{open_partition_reader, open_partition_writer, partition_path};
use crate::error::SqlResult;
use crate::readers::Readers;
use crate::writer::{Begin, Writer};

/// Reader threads of each partition file beyond the main one.
const PARTITION_READERS: usize = 2;

/// The most partitions; past this a single machine's disk is the limit.
pub const MAX_PARTITIONS: usize = 64;

/// Partitions when none are configured: half the cores (the other half
/// serve the sockets), at most 8.
pub fn default_partitions() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 8)
}

/// One partition file's writer and readers.
struct PartitionFile {
    writer: Writer,
    readers: Readers,
}

/// The partition files beyond the main one, and where each license and
/// device lives.
pub(crate) struct Partitions {
    files: Vec<PartitionFile>,
    /// How many partitions new licenses are spread over.
    spread: usize,
    /// Never stale: a license's partition never changes.
    licenses: RwLock<HashMap<LicensePk, usize>>,
    /// Never stale: a device pk is never reused, and its license's
    /// partition never changes. Forgotten when the device is unbound.
    devices: RwLock<HashMap<DevicePk, usize>>,
}

impl Partitions {
    /// Opens partitions 1..`count` of the main file `main` (migrated
    /// already), and every further one its licenses are recorded in.
    pub(crate) fn open(main: &Path, count: usize, bus: &Bus, stats: &CommitMetrics) -> StoreResult<Self> {
        let spread = count.clamp(1, MAX_PARTITIONS);
        let recorded = recorded_partitions(main)?;
        let mut files = Vec::new();
        for index in 1..spread.max(recorded) {
            let path = partition_path(main, index);
            let conn = open_partition_writer(&path, main)?;
            let writer =
                Writer::start(conn, Begin::ThisFileOnly, format!("sqlite-writer-p{index}"), bus.clone(), stats.clone());
            let readers = Readers::start_with(PARTITION_READERS, 0, &format!("-p{index}"), || {
                open_partition_reader(&path, main)
            })?;
            files.push(PartitionFile { writer, readers });
        }
        Ok(Self { files, spread, licenses: RwLock::default(), devices: RwLock::default() })
    }

    /// How many partitions new licenses are spread over.
    pub(crate) fn spread(&self) -> usize {
        self.spread
    }

    /// Partitions open, the main file counted.
    pub(crate) fn count(&self) -> usize {
        self.files.len() + 1
    }

    pub(crate) async fn close(&self) {
        for file in &self.files {
            file.writer.close().await;
            file.readers.close();
        }
    }

    fn cached<K: std::hash::Hash + Eq>(map: &RwLock<HashMap<K, usize>>, key: &K) -> Option<usize> {
        map.read().unwrap_or_else(|e| e.into_inner()).get(key).copied()
    }

    fn remember<K: std::hash::Hash + Eq>(map: &RwLock<HashMap<K, usize>>, key: K, index: usize) {
        map.write().unwrap_or_else(|e| e.into_inner()).insert(key, index);
    }
}

/// Partitions the main file's licenses are recorded in (1 for a file
/// from before partitions, or one with no licenses).
fn recorded_partitions(main: &Path) -> StoreResult<usize> {
    let conn = crate::conn::open_reader(main)?;
    let highest: i64 =
        conn.query_row("SELECT COALESCE(MAX(partition_index), 0) FROM licenses", [], |row| row.get(0)).sql()?;
    Ok(usize::try_from(highest).unwrap_or(0) + 1)
}

/// A partition's writer and readers.
pub(crate) struct Partition<'a> {
    pub(crate) index: usize,
    pub(crate) writer: &'a Writer,
    pub(crate) readers: &'a Readers,
}

impl SqliteStore {
    /// Partition `index`; the main file for 0.
    pub(crate) fn partition(&self, index: usize) -> StoreResult<Partition<'_>> {
        if index == 0 {
            return Ok(Partition { index, writer: &self.writer, readers: &self.readers });
        }
        let file = self.partitions.files.get(index - 1).ok_or_else(|| {
            // A license created by a command told of more partitions
            // than this server was when it started.
            StoreError::Unavailable(format!(
                "the data is in partition {index}, which this server did not open; restart it to open it"
            ))
        })?;
        Ok(Partition { index, writer: &file.writer, readers: &file.readers })
    }

    /// Every partition, the main file first.
    pub(crate) fn every_partition(&self) -> impl Iterator<Item = Partition<'_>> {
        (0..self.partitions.count()).filter_map(|index| self.partition(index).ok())
    }

    /// The partition holding `license`'s relay data.
    pub(crate) async fn license_partition(&self, license: LicensePk) -> StoreResult<Partition<'_>> {
        if self.partitions.files.is_empty() {
            return self.partition(0);
        }
        if let Some(index) = Partitions::cached(&self.partitions.licenses, &license) {
            return self.partition(index);
        }
        let index = self.readers.read(move |conn| partition_of_license(conn, license)).await?;
        Partitions::remember(&self.partitions.licenses, license, index);
        self.partition(index)
    }

    /// The partition holding `device`'s relay data: its license's, or the
    /// main file's for a device no longer bound (which has none).
    pub(crate) async fn device_partition(&self, device: DevicePk) -> StoreResult<Partition<'_>> {
        if self.partitions.files.is_empty() {
            return self.partition(0);
        }
        if let Some(index) = Partitions::cached(&self.partitions.devices, &device) {
            return self.partition(index);
        }
        match self.readers.read(move |conn| partition_of_device(conn, device)).await? {
            Some(index) => {
                Partitions::remember(&self.partitions.devices, device, index);
                self.partition(index)
            }
            None => self.partition(0),
        }
    }

    /// `device`'s partition if known without reading (always, with one
    /// partition), for calls that cannot wait.
    pub(crate) fn known_device_partition(&self, device: DevicePk) -> Option<Partition<'_>> {
        if self.partitions.files.is_empty() {
            return self.partition(0).ok();
        }
        Partitions::cached(&self.partitions.devices, &device).and_then(|index| self.partition(index).ok())
    }

    /// Records that `device` lives in partition `index` (its license's).
    pub(crate) fn remember_device(&self, device: DevicePk, index: usize) {
        if !self.partitions.files.is_empty() {
            Partitions::remember(&self.partitions.devices, device, index);
        }
    }

    /// Forgets a deleted license's partition.
    pub(crate) fn forget_license_partition(&self, license: LicensePk) {
        self.partitions.licenses.write().unwrap_or_else(|e| e.into_inner()).remove(&license);
    }

    /// Forgets an unbound device's partition.
    pub(crate) fn forget_device_partition(&self, device: DevicePk) {
        if !self.partitions.files.is_empty() {
            self.partitions.devices.write().unwrap_or_else(|e| e.into_inner()).remove(&device);
        }
    }
}

fn partition_of_license(conn: &Connection, license: LicensePk) -> StoreResult<usize> {
    let index: Option<i64> = conn
        .prepare_cached("SELECT partition_index FROM licenses WHERE pk = ?1")
        .sql()?
        .query_row([license.0], |row| row.get(0))
        .optional()
        .sql()?;
    Ok(index.and_then(|i| usize::try_from(i).ok()).unwrap_or(0))
}

fn partition_of_device(conn: &Connection, device: DevicePk) -> StoreResult<Option<usize>> {
    let index: Option<i64> = conn
        .prepare_cached(
            "SELECT l.partition_index FROM devices d JOIN licenses l ON l.pk = d.license_pk WHERE d.pk = ?1",
        )
        .sql()?
        .query_row([device.0], |row| row.get(0))
        .optional()
        .sql()?;
    Ok(index.and_then(|i| usize::try_from(i).ok()))
}

/// The partition a new license goes to: round robin by its pk.
pub(crate) fn partition_for_new_license(license: LicensePk, spread: usize) -> usize {
    usize::try_from(license.0).unwrap_or(0) % spread.max(1)
}
