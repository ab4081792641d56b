-- Operators (server administrators), their admin API tokens, and the
-- audit log of administrative acts.

CREATE TABLE operators (
    id            BLOB PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE operator_tokens (
    id          TEXT PRIMARY KEY,
    operator_id BLOB NOT NULL REFERENCES operators(id),
    hash        BLOB NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    operator_id BLOB,
    action      TEXT NOT NULL,
    license     TEXT,
    target      TEXT,
    address     TEXT,
    detail      TEXT NOT NULL
);

CREATE INDEX audit_log_license ON audit_log (license, id);
CREATE INDEX audit_log_operator ON audit_log (operator_id, id);
CREATE INDEX audit_log_at ON audit_log (at);
