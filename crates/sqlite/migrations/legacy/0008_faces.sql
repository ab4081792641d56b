-- Seed 004's face service: enrolled face embeddings (unit vectors,
-- little-endian f32), several per passenger.
CREATE TABLE rail_faces (
    id         BLOB PRIMARY KEY,
    license_pk INTEGER NOT NULL REFERENCES licenses(pk),
    user_id    BLOB NOT NULL REFERENCES rail_users(id),
    embedding  BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX rail_faces_user ON rail_faces (license_pk, user_id);
