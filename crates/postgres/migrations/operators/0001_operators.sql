-- Operators (server administrators), their admin API tokens, and the
-- audit log of administrative acts.

CREATE TABLE operators (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE operator_tokens (
    id          TEXT PRIMARY KEY,
    operator_id UUID NOT NULL REFERENCES operators(id),
    hash        BYTEA NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    operator_id UUID,
    action      TEXT NOT NULL,
    license     TEXT,
    target      TEXT,
    address     TEXT,
    detail      JSONB NOT NULL
);

CREATE INDEX audit_log_license ON audit_log (license, id);
CREATE INDEX audit_log_operator ON audit_log (operator_id, id);
CREATE INDEX audit_log_at ON audit_log (at);
