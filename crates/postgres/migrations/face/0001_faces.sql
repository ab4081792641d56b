-- Seed 004's face service: enrolled face embeddings (unit vectors,
-- little-endian f32), several per passenger.
CREATE TABLE rail_faces (
    id         UUID PRIMARY KEY,
    license_pk BIGINT NOT NULL REFERENCES licenses(pk),
    user_id    UUID NOT NULL REFERENCES rail_users(id),
    embedding  BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX rail_faces_user ON rail_faces (license_pk, user_id);
