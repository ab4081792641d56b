//! What telemetry needs from storage: chunk rows per robot (the bytes are
//! [`super::codec`]'s, backends never look inside) and the forwarding
//! backlog. The same rows work in SQLite and PostgreSQL, so every node of a
//! cluster reads every write.

use async_trait::async_trait;
use relayhub_core::ids::LicensePk;
use relayhub_core::store::StoreResult;
use relayhub_core::time::Timestamp;

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkForm {
    /// Points as written.
    Points,
    /// Per-step aggregates of points (downsampled).
    Rollup,
}

impl ChunkForm {
    pub fn code(self) -> i64 {
        match self {
            ChunkForm::Points => 0,
            ChunkForm::Rollup => 1,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        [ChunkForm::Points, ChunkForm::Rollup].into_iter().find(|f| f.code() == code)
    }
}

/// A chunk to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChunk {
    pub form: ChunkForm,
    /// 0 for a write as it came; each compaction adds one.
    pub level: u8,
    /// The first and last point's time (Unix ns).
    pub min_time: i64,
    pub max_time: i64,
    pub points: u64,
    pub body: Vec<u8>,
}

/// A stored chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    pub id: i64,
    pub robot: i64,
    pub chunk: NewChunk,
    pub created_at: Timestamp,
}

/// The series a write brings ([`super::quota::series_hash`] of each,
/// sorted, unique) and how many its robot may know in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesQuota {
    pub hashes: Vec<i64>,
    pub max: u64,
}

impl SeriesQuota {
    /// No series counted: for writes that are not a robot's (tests, tools).
    pub fn unchecked() -> Self {
        Self { hashes: Vec::new(), max: u64::MAX }
    }
}

/// What became of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    Stored,
    /// Refused, nothing stored: the robot knows `known` series and these
    /// hashes of the write are new to it (at most [`NEW_SHOWN`]).
    TooManySeries {
        known: u64,
        new: u64,
        shown: Vec<i64>,
    },
}

/// New series a refusal names, at most.
pub const NEW_SHOWN: usize = 3;

/// Telemetry chunks.
#[async_trait]
pub trait TelemetryStore: Send + Sync + 'static {
    /// Stores one write, durably: its chunk, the robot's `last_seen_at`,
    /// and its lines for the forwarding backlog when given.
    async fn append(&self, robot: i64, chunk: NewChunk, forward: Option<Vec<u8>>, now: Timestamp) -> StoreResult<()> {
        self.append_within(robot, chunk, SeriesQuota::unchecked(), forward, now).await.map(|_| ())
    }
    /// [`Self::append`], unless the write's series new to the robot would
    /// take it past `quota.max` known series: then nothing is stored. The
    /// series are recorded (or marked seen, at most hourly) in the same
    /// transaction, and writes of one robot are serialised, so concurrent
    /// writes cannot both pass the count.
    async fn append_within(
        &self,
        robot: i64,
        chunk: NewChunk,
        quota: SeriesQuota,
        forward: Option<Vec<u8>>,
        now: Timestamp,
    ) -> StoreResult<Appended>;
    /// Forgets series not written since `before` (they count no more);
    /// returns how many.
    async fn forget_series(&self, before: Timestamp) -> StoreResult<u64>;
    /// Bytes of stored chunks (bodies) per license, for the licenses that
    /// have any.
    async fn bytes_by_license(&self) -> StoreResult<Vec<(i64, u64)>>;
    /// A license's telemetry: points in the point chunks that end at or
    /// after `since_ns`, and the bytes of all its chunks.
    async fn license_usage(&self, license: LicensePk, since_ns: i64) -> StoreResult<(u64, u64)>;
    /// Deletes every chunk and series of the license's robots (before the
    /// robots themselves go).
    async fn forget_license(&self, license: LicensePk) -> StoreResult<()>;
    /// A robot's chunks of `form` with points in `[from, to]`, oldest
    /// first (by when they were stored).
    async fn chunks(&self, robot: i64, form: ChunkForm, from: i64, to: i64) -> StoreResult<Vec<StoredChunk>>;
    /// Robots with at least `min` chunks of `form` at `level` stored before
    /// `before`; at most `limit`.
    async fn compactable(
        &self,
        form: ChunkForm,
        level: u8,
        min: usize,
        before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<i64>>;
    /// A robot's chunks of `form` at `level` stored before `before`, oldest
    /// first, at most `limit`.
    async fn chunks_at(
        &self,
        robot: i64,
        form: ChunkForm,
        level: u8,
        before: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<StoredChunk>>;
    /// Replaces the chunks `old` with `new` in one transaction; `false`
    /// (and nothing changed) when any of `old` is gone already — another
    /// node compacted them first.
    async fn replace(&self, robot: i64, old: Vec<i64>, new: Vec<NewChunk>, now: Timestamp) -> StoreResult<bool>;
    /// Drops chunks of `form` whose last point is before `before`; returns
    /// how many.
    async fn expire(&self, form: ChunkForm, before: i64) -> StoreResult<u64>;
}

/// Of a write's series (`hashes`), those the robot does not know yet
/// (`known` says), and whether taking them would pass `max` with `count`
/// known already: the refusal to give, or `None` to store.
pub fn series_verdict(hashes: &[i64], known: impl Fn(i64) -> bool, count: u64, max: u64) -> Option<Appended> {
    let new: Vec<i64> = hashes.iter().copied().filter(|h| !known(*h)).collect();
    if count.saturating_add(new.len() as u64) <= max {
        return None;
    }
    Some(Appended::TooManySeries {
        known: count,
        new: new.len() as u64,
        shown: new.into_iter().take(NEW_SHOWN).collect(),
    })
}

/// How long a known series' `seen_at` may lag: it is rewritten at most
/// this often, not on every write.
pub const SEEN_GRANULARITY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Lines waiting to be forwarded.
#[async_trait]
pub trait ForwardStore: Send + Sync + 'static {
    /// The oldest batches no other node holds, up to `max_bytes` (at least
    /// one), held until `until`.
    async fn claim(&self, max_bytes: usize, now: Timestamp, until: Timestamp) -> StoreResult<Vec<(i64, Vec<u8>)>>;
    /// Forgets batches that were sent (or refused for good).
    async fn forwarded(&self, ids: Vec<i64>) -> StoreResult<()>;
    /// Gives back batches that could not be sent, for the next attempt.
    async fn release(&self, ids: Vec<i64>) -> StoreResult<()>;
    /// Drops the oldest batches while the backlog holds more than
    /// `max_bytes`; returns how many.
    async fn trim(&self, max_bytes: u64) -> StoreResult<u64>;
    /// Batches and bytes waiting.
    async fn backlog(&self) -> StoreResult<(u64, u64)>;
}

/// The ids of the oldest waiting batches (`(id, bytes)`, oldest first)
/// that fit in `max_bytes` — at least one, so a batch larger than the
/// bound still goes.
pub fn within_bytes(waiting: &[(i64, usize)], max_bytes: usize) -> Vec<i64> {
    let mut total = 0;
    waiting
        .iter()
        .enumerate()
        .take_while(|(i, (_, bytes))| {
            total += bytes;
            *i == 0 || total <= max_bytes
        })
        .map(|(_, (id, _))| *id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_series_count_against_the_limit() {
        let known = |h: i64| h < 10;
        assert_eq!(series_verdict(&[1, 2, 3], known, 5, 5), None, "known series pass a full robot");
        assert_eq!(series_verdict(&[1, 11, 12], known, 3, 5), None);
        let refused = series_verdict(&[1, 11, 12, 13, 14], known, 3, 5);
        assert_eq!(refused, Some(Appended::TooManySeries { known: 3, new: 4, shown: vec![11, 12, 13] }));
    }

    #[test]
    fn a_claim_fits_its_bound_but_takes_at_least_one() {
        let waiting = [(1, 600), (2, 300), (3, 200)];
        assert_eq!(within_bytes(&waiting, 1000), vec![1, 2]);
        assert_eq!(within_bytes(&waiting, 100), vec![1]);
        assert_eq!(within_bytes(&[], 100), Vec::<i64>::new());
    }
}
