//! Seed 004's face service (`/face_api`): passengers' face embeddings are
//! enrolled (several per passenger), identified (the nearest enrolled face
//! within `rail.face.threshold`), and forgotten.
//!
//! Embeddings are unit-normalised and kept in the store; each node holds
//! them in an in-memory HNSW index ([`index`], usearch), rebuilt from the
//! store at start-up and kept in step through the platform's bus (an
//! enrolment or a forgetting on any node reaches every node): [`sync`].

pub mod api;
pub mod index;
pub mod sync;

use relayhub_core::bus::Topic;
use relayhub_core::ids::LicensePk;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// An enrolled face (its embedding is not shown again).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Face {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: relayhub_core::time::Timestamp,
}

/// A stored face with its embedding, for the index.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFace {
    pub license: LicensePk,
    pub id: Uuid,
    pub user_id: Uuid,
    pub embedding: Vec<f32>,
}

/// What changed in the faces of a license, announced on the bus once
/// committed. On the node that wrote it an enrolment carries its
/// embedding; other nodes read it from the store.
#[derive(Debug, Clone, PartialEq)]
pub enum FaceEvent {
    Enrolled { license: LicensePk, id: Uuid, user_id: Uuid, embedding: Option<Vec<f32>> },
    Forgotten { license: LicensePk, user_id: Uuid },
}

/// The events of a license's faces deleted: one per passenger who had any.
pub fn forgotten(license: LicensePk, mut users: Vec<Uuid>) -> Vec<relayhub_core::bus::Event> {
    users.sort_unstable();
    users.dedup();
    users.into_iter().map(|user_id| relayhub_core::bus::Event::new(FaceEvent::Forgotten { license, user_id })).collect()
}

impl Topic for FaceEvent {
    const NAME: &'static str = "face";

    fn encode(&self) -> Option<String> {
        Some(match self {
            FaceEvent::Enrolled { license, id, user_id, .. } => format!("e {} {id} {user_id}", license.0),
            FaceEvent::Forgotten { license, user_id } => format!("f {} {user_id}", license.0),
        })
    }

    fn decode(wire: &str) -> Option<Self> {
        let mut parts = wire.split(' ');
        let kind = parts.next()?;
        let license = LicensePk(parts.next()?.parse().ok()?);
        match kind {
            "e" => Some(FaceEvent::Enrolled {
                license,
                id: parts.next()?.parse().ok()?,
                user_id: parts.next()?.parse().ok()?,
                embedding: None,
            }),
            "f" => Some(FaceEvent::Forgotten { license, user_id: parts.next()?.parse().ok()? }),
            _ => None,
        }
    }
}

/// Scales a vector to unit length; `None` for a zero, infinite or NaN one.
pub fn normalise(mut vector: Vec<f32>) -> Option<Vec<f32>> {
    let norm = vector.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if !norm.is_finite() || norm < 1e-12 {
        return None;
    }
    for x in &mut vector {
        *x = (f64::from(*x) / norm) as f32;
    }
    Some(vector)
}

/// An embedding as stored: little-endian `f32`s.
pub fn to_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`to_bytes`]; `None` when the length is not whole floats.
pub fn from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_become_unit_length_and_zero_is_refused() {
        let unit = normalise(vec![3.0, 4.0]).unwrap();
        assert!((unit[0] - 0.6).abs() < 1e-6 && (unit[1] - 0.8).abs() < 1e-6);
        assert!(normalise(vec![0.0, 0.0]).is_none());
        assert!(normalise(vec![f32::NAN, 1.0]).is_none());
        assert!(normalise(vec![f32::INFINITY, 1.0]).is_none());
    }

    #[test]
    fn bytes_round_trip_and_events_cross_nodes_without_the_vector() {
        let v = vec![0.25, -1.5, 3.0];
        assert_eq!(from_bytes(&to_bytes(&v)).unwrap(), v);
        assert!(from_bytes(&[1, 2, 3]).is_none());
        let event = FaceEvent::Enrolled {
            license: LicensePk(3),
            id: Uuid::from_u128(1),
            user_id: Uuid::from_u128(2),
            embedding: Some(v),
        };
        let remote = FaceEvent::decode(&event.encode().unwrap()).unwrap();
        assert_eq!(
            remote,
            FaceEvent::Enrolled {
                license: LicensePk(3),
                id: Uuid::from_u128(1),
                user_id: Uuid::from_u128(2),
                embedding: None
            }
        );
        let forgotten = FaceEvent::Forgotten { license: LicensePk(3), user_id: Uuid::from_u128(2) };
        assert_eq!(FaceEvent::decode(&forgotten.encode().unwrap()).unwrap(), forgotten);
    }
}
