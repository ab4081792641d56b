-- The series each robot has written (fleet.telemetry.max_series_per_robot):
-- a stable 64-bit hash of measurement, tags and field, and when a write
-- last brought it (rewritten at most hourly). Series unseen for the raw
-- retention are forgotten and count no more.

CREATE TABLE telemetry_series (
    robot_id BIGINT      NOT NULL,
    hash     BIGINT      NOT NULL,
    seen_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (robot_id, hash)
);
CREATE INDEX telemetry_series_seen ON telemetry_series(seen_at);
