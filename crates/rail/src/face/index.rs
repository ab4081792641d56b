//! The in-memory nearest-neighbour index of each license's faces: an HNSW
//! graph (usearch) over unit vectors with the squared Euclidean metric,
//! and which passenger each face is. A face's key in the graph is its
//! UUID's two halves XORed (random: a collision among a million faces has
//! odds of about 1 in 30 million), so inserting a face twice is a no-op.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use relayhub_core::ids::LicensePk;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};
use uuid::Uuid;

/// The nearest enrolled face: whose it is, and how far (Euclidean, on
/// unit vectors: 0 is the same direction, 2 the opposite).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearest {
    pub user_id: Uuid,
    pub distance: f32,
}

/// One license's faces.
struct LicenseFaces {
    graph: Index,
    owner: HashMap<u64, Uuid>,
    faces_of: HashMap<Uuid, Vec<u64>>,
}

/// Every license's faces on this node. Searches share a license's graph;
/// insertions and removals take it alone.
pub struct FaceIndex {
    options: IndexOptions,
    expansion_search: usize,
    licenses: RwLock<HashMap<LicensePk, Arc<RwLock<LicenseFaces>>>>,
}

fn key(face: Uuid) -> u64 {
    let (high, low) = face.as_u64_pair();
    high ^ low
}

/// The graph's first reservation; it doubles as it fills.
const FIRST_CAPACITY: usize = 1024;

impl FaceIndex {
    /// An empty index of `dimension`-long vectors; `expansion_search` is
    /// HNSW's breadth of search (higher: better recall, slower).
    pub fn new(dimension: usize, expansion_search: usize) -> Self {
        let options = IndexOptions {
            dimensions: dimension,
            metric: MetricKind::L2sq,
            quantization: ScalarKind::F32,
            connectivity: 0,
            expansion_add: 0,
            expansion_search,
            multi: false,
        };
        Self { options, expansion_search, licenses: RwLock::new(HashMap::new()) }
    }

    fn license(&self, license: LicensePk) -> Option<Arc<RwLock<LicenseFaces>>> {
        self.licenses.read().unwrap_or_else(|e| e.into_inner()).get(&license).cloned()
    }

    fn license_or_new(&self, license: LicensePk) -> Result<Arc<RwLock<LicenseFaces>>, String> {
        if let Some(faces) = self.license(license) {
            return Ok(faces);
        }
        let mut all = self.licenses.write().unwrap_or_else(|e| e.into_inner());
        if let Some(faces) = all.get(&license) {
            return Ok(faces.clone());
        }
        let graph = Index::new(&self.options).map_err(|e| format!("creating a face index: {e}"))?;
        graph.change_expansion_search(self.expansion_search);
        graph.reserve(FIRST_CAPACITY).map_err(|e| format!("reserving a face index: {e}"))?;
        let faces = Arc::new(RwLock::new(LicenseFaces { graph, owner: HashMap::new(), faces_of: HashMap::new() }));
        all.insert(license, faces.clone());
        Ok(faces)
    }

    /// Adds a face (a unit vector of the index's dimension) unless it is in.
    pub fn insert(&self, license: LicensePk, face: Uuid, user: Uuid, vector: &[f32]) -> Result<(), String> {
        if vector.len() != self.options.dimensions {
            return Err(format!("a face of {} numbers in an index of {}", vector.len(), self.options.dimensions));
        }
        let faces = self.license_or_new(license)?;
        let mut faces = faces.write().unwrap_or_else(|e| e.into_inner());
        let key = key(face);
        if faces.owner.contains_key(&key) {
            return Ok(());
        }
        let graph = &faces.graph;
        if graph.size() + 1 > graph.capacity() {
            graph
                .reserve((graph.capacity() * 2).max(FIRST_CAPACITY))
                .map_err(|e| format!("growing a face index: {e}"))?;
        }
        graph.add(key, vector).map_err(|e| format!("adding a face: {e}"))?;
        faces.owner.insert(key, user);
        faces.faces_of.entry(user).or_default().push(key);
        Ok(())
    }

    /// Whether a face is in.
    pub fn contains(&self, license: LicensePk, face: Uuid) -> bool {
        self.license(license)
            .is_some_and(|faces| faces.read().unwrap_or_else(|e| e.into_inner()).owner.contains_key(&key(face)))
    }

    /// Removes every face of a passenger; answers how many there were.
    pub fn forget(&self, license: LicensePk, user: Uuid) -> usize {
        let Some(faces) = self.license(license) else { return 0 };
        let mut faces = faces.write().unwrap_or_else(|e| e.into_inner());
        let keys = faces.faces_of.remove(&user).unwrap_or_default();
        for key in &keys {
            faces.owner.remove(key);
            if let Err(err) = faces.graph.remove(*key) {
                tracing::error!(%err, "removing a face from the index failed");
            }
        }
        keys.len()
    }

    /// Drops a deleted license's graph, whatever it still holds (its
    /// faces' events empty it on every other node).
    pub fn forget_license(&self, license: LicensePk) {
        self.licenses.write().unwrap_or_else(|e| e.into_inner()).remove(&license);
    }

    /// The nearest face of the license to a unit vector.
    pub fn nearest(&self, license: LicensePk, vector: &[f32]) -> Result<Option<Nearest>, String> {
        let Some(faces) = self.license(license) else { return Ok(None) };
        let faces = faces.read().unwrap_or_else(|e| e.into_inner());
        if faces.owner.is_empty() {
            return Ok(None);
        }
        let found = faces.graph.search(vector, 1).map_err(|e| format!("searching faces: {e}"))?;
        Ok(found.keys.first().zip(found.distances.first()).and_then(|(key, squared)| {
            let user_id = *faces.owner.get(key)?;
            Some(Nearest { user_id, distance: squared.max(0.0).sqrt() })
        }))
    }

    /// Forgets everything (before a rebuild).
    pub fn clear(&self) {
        self.licenses.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Faces held, over every license.
    pub fn len(&self) -> usize {
        let all = self.licenses.read().unwrap_or_else(|e| e.into_inner());
        all.values().map(|faces| faces.read().unwrap_or_else(|e| e.into_inner()).owner.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the index holds, over every license: the graphs (vectors,
    /// links, reserved room) and, estimated from their capacity, the maps
    /// of who each face is.
    pub fn bytes(&self) -> usize {
        let all = self.licenses.read().unwrap_or_else(|e| e.into_inner());
        all.values()
            .map(|faces| {
                let faces = faces.read().unwrap_or_else(|e| e.into_inner());
                // A hash map entry: the key, the value, one control byte.
                let owner = faces.owner.capacity() * (8 + 16 + 1);
                let users = faces.faces_of.capacity() * (16 + 24 + 1) + faces.owner.len() * 8;
                faces.graph.memory_usage() + owner + users
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dimension: usize) -> Vec<f32> {
        // splitmix64: well-spread numbers from any seed, and no randomness
        // in unit tests.
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let raw: Vec<f32> = (0..dimension)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        super::super::normalise(raw).unwrap()
    }

    #[test]
    fn the_nearest_face_is_found_per_license_and_forgotten_with_its_user() {
        let index = FaceIndex::new(16, 64);
        let (a, b) = (LicensePk(1), LicensePk(2));
        let (anna, boris) = (Uuid::from_u128(10), Uuid::from_u128(20));
        for i in 0..2000u64 {
            let user = if i == 7 { anna } else { boris };
            index.insert(a, Uuid::from_u128(1000 + u128::from(i)), user, &unit(i, 16)).unwrap();
        }
        let hit = index.nearest(a, &unit(7, 16)).unwrap().unwrap();
        assert_eq!(hit.user_id, anna);
        assert!(hit.distance < 1e-3, "{hit:?}");
        assert_eq!(index.nearest(b, &unit(7, 16)).unwrap(), None, "another license has no faces");

        index.insert(a, Uuid::from_u128(1007), anna, &unit(7, 16)).unwrap();
        assert_eq!(index.len(), 2000, "inserting a face twice is a no-op");
        assert_eq!(index.forget(a, anna), 1);
        assert!(!index.contains(a, Uuid::from_u128(1007)));
        assert_ne!(index.nearest(a, &unit(7, 16)).unwrap().unwrap().user_id, anna);
    }
}
