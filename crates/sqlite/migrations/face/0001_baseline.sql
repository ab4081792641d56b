-- Seed 004's face service: enrolled face embeddings, one row each.
-- Its first version: the schema as the files in legacy/ left it (0001-0014).

CREATE TABLE rail_faces (
    id         BLOB PRIMARY KEY,
    license_pk INTEGER NOT NULL REFERENCES licenses(pk),
    user_id    BLOB NOT NULL REFERENCES rail_users(id),
    embedding  BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX rail_faces_user ON rail_faces (license_pk, user_id);
