-- Read tokens (issue 38): a user's long-lived, read-only credential for
-- dashboards (the Prometheus API), shown once, kept as its hash, revocable.
CREATE TABLE fleet_read_tokens (
    id         TEXT    PRIMARY KEY,          -- public: rqt_…
    user_id    INTEGER NOT NULL REFERENCES fleet_users(id),
    hash       BLOB    NOT NULL UNIQUE,      -- SHA-256 of the token
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE INDEX fleet_read_tokens_user ON fleet_read_tokens (user_id);
