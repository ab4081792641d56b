-- Seed 001's registered_devices, and the tokens instances open tunnels with.
CREATE TABLE registry_devices (
    device_uuid   TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL,
    public_url    TEXT,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'active', 'blocked')),
    last_seen     TIMESTAMPTZ NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX registry_devices_instance ON registry_devices (instance_id);

CREATE TABLE registry_instances (
    instance_id TEXT PRIMARY KEY,
    token_hash  BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
