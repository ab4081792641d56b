-- Robot telemetry (seed 002): chunks of points or rollups per robot, in
-- relayhub's columnar encoding (the bytes are the fleet's codec), and the
-- backlog of lines waiting to be forwarded. Point times are Unix
-- nanoseconds.

CREATE TABLE telemetry_chunks (
    id          BIGSERIAL   PRIMARY KEY,
    robot_id    BIGINT      NOT NULL,
    form        SMALLINT    NOT NULL,       -- 0 points, 1 rollup
    level       SMALLINT    NOT NULL,       -- 0 as written; +1 per compaction
    min_time    BIGINT      NOT NULL,
    max_time    BIGINT      NOT NULL,
    points      BIGINT      NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    body        BYTEA       NOT NULL
);
-- The bodies are compressed already.
ALTER TABLE telemetry_chunks ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE INDEX telemetry_chunks_robot ON telemetry_chunks(robot_id, form, max_time);
CREATE INDEX telemetry_chunks_level ON telemetry_chunks(form, level, created_at);
CREATE INDEX telemetry_chunks_expiry ON telemetry_chunks(form, max_time);

CREATE TABLE telemetry_forward (
    id            BIGSERIAL   PRIMARY KEY,
    bytes         BIGINT      NOT NULL,
    claimed_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    body          BYTEA       NOT NULL
);
ALTER TABLE telemetry_forward ALTER COLUMN body SET STORAGE EXTERNAL;
