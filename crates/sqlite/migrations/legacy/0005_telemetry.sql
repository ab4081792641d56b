-- Robot telemetry (seed 002): chunks of points or rollups per robot, in
-- relayhub's columnar encoding (the bytes are the fleet's codec), and the
-- backlog of lines waiting to be forwarded. Point times are Unix
-- nanoseconds; created_at and claimed_until Unix milliseconds.

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
