-- The core's tables: licenses and their bearer tokens, app API keys (and
-- the licenses a key is scoped to), and device bindings. Every other
-- module's tables refer to these, so they are created first.
-- Its first version: the schema as the files in legacy/ left it (0001-0014).

CREATE TABLE licenses (
    pk          INTEGER PRIMARY KEY,
    number      TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL DEFAULT '',
    expires_at  INTEGER,                 -- first instant it no longer works
    max_devices INTEGER,                 -- NULL: no limit
    created_at  INTEGER NOT NULL,
    partition_index INTEGER NOT NULL DEFAULT 0,
    binding TEXT NOT NULL DEFAULT 'open'
);

CREATE TABLE license_tokens (
    id          TEXT    PRIMARY KEY,     -- public: tok_…
    license_pk  INTEGER NOT NULL REFERENCES licenses(pk) ON DELETE CASCADE,
    hash        BLOB    NOT NULL UNIQUE, -- SHA-256 of the token
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE INDEX license_tokens_license ON license_tokens(license_pk);

CREATE TABLE api_keys (
    id          TEXT    PRIMARY KEY,     -- public: key_…
    name        TEXT    NOT NULL DEFAULT '',
    hash        BLOB    NOT NULL UNIQUE, -- SHA-256 of the key
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    scoped INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE devices (
    pk          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT    NOT NULL UNIQUE, -- one license per device
    license_pk  INTEGER NOT NULL REFERENCES licenses(pk),
    bound_at    INTEGER NOT NULL,
    active      INTEGER NOT NULL DEFAULT 0, -- has ever connected
    last_seen   INTEGER,
    online_conn INTEGER,                 -- the open connection's number, if any
    secret_hash BLOB
);

CREATE INDEX devices_license ON devices(license_pk, device_id);

CREATE TABLE api_key_licenses (
    key_id     TEXT    NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    license_pk INTEGER NOT NULL REFERENCES licenses(pk) ON DELETE CASCADE,
    PRIMARY KEY (key_id, license_pk)
) WITHOUT ROWID;
