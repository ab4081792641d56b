-- The registry (seed 001): registered warehouse devices and the tunnel
-- tokens of instances behind NAT.
-- Its first version: the schema as the files in legacy/ left it (0001-0014).

CREATE TABLE registry_devices (
    device_uuid   TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL,
    public_url    TEXT,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'active', 'blocked')),
    last_seen     INTEGER NOT NULL,
    registered_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX registry_devices_instance ON registry_devices (instance_id);

CREATE TABLE registry_instances (
    instance_id TEXT PRIMARY KEY,
    token_hash  BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
