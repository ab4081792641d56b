-- The nodes sharing this database, each with a heartbeat.

CREATE TABLE nodes (
    id          TEXT        PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL,
    seen_at     TIMESTAMPTZ NOT NULL
);
