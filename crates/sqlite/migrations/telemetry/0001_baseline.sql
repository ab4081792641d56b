-- Robot telemetry: compressed chunks of points, the series each robot
-- has written (for its quota), and the forwarding backlog.
-- Its first version: the schema as the files in legacy/ left it (0001-0014).

CREATE TABLE telemetry_chunks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    robot_id    INTEGER NOT NULL,
    form        INTEGER NOT NULL,           -- 0 points, 1 rollup
    level       INTEGER NOT NULL,           -- 0 as written; +1 per compaction
    min_time    INTEGER NOT NULL,
    max_time    INTEGER NOT NULL,
    points      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    body        BLOB    NOT NULL
);

CREATE INDEX telemetry_chunks_robot ON telemetry_chunks(robot_id, form, max_time);

CREATE INDEX telemetry_chunks_level ON telemetry_chunks(form, level, created_at);

CREATE INDEX telemetry_chunks_expiry ON telemetry_chunks(form, max_time);

CREATE TABLE telemetry_forward (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    bytes         INTEGER NOT NULL,
    claimed_until INTEGER NOT NULL DEFAULT 0,
    body          BLOB    NOT NULL
);

CREATE TABLE telemetry_series (
    robot_id INTEGER NOT NULL,
    hash     INTEGER NOT NULL,
    seen_at  INTEGER NOT NULL,
    PRIMARY KEY (robot_id, hash)
) WITHOUT ROWID;

CREATE INDEX telemetry_series_seen ON telemetry_series(seen_at);
