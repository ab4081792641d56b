-- relayhub on SQLite: identity (licenses, tokens, keys) and the relay
-- (devices, message queues with receipts, inbox).
-- Times are Unix milliseconds (UTC). Ids shown to clients are UUIDs stored
-- as 16-byte blobs.

CREATE TABLE licenses (
    pk          INTEGER PRIMARY KEY,
    number      TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL DEFAULT '',
    expires_at  INTEGER,                 -- first instant it no longer works
    max_devices INTEGER,                 -- NULL: no limit
    created_at  INTEGER NOT NULL
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
    revoked_at  INTEGER
);

CREATE TABLE devices (
    -- AUTOINCREMENT: a pk is never reused, so records of an unbound device
    -- are never mistaken for a later device's.
    pk          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT    NOT NULL UNIQUE, -- one license per device
    license_pk  INTEGER NOT NULL REFERENCES licenses(pk),
    bound_at    INTEGER NOT NULL,
    active      INTEGER NOT NULL DEFAULT 0, -- has ever connected
    last_seen   INTEGER,
    online_conn INTEGER,                 -- the open connection's number, if any
    next_seq    INTEGER NOT NULL DEFAULT 1,
    pending     INTEGER NOT NULL DEFAULT 0  -- queued + sent, kept with every change
);
CREATE INDEX devices_license ON devices(license_pk, device_id);

-- One row per message: the queue entry while pending, its receipt after.
CREATE TABLE messages (
    pk          INTEGER PRIMARY KEY,
    id          BLOB    NOT NULL UNIQUE,
    license_pk  INTEGER NOT NULL,
    device_pk   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    status      INTEGER NOT NULL,        -- 0 queued, 1 sent, 2 delivered, 3 expired
    data        TEXT,                    -- NULL once delivered or expired
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    idem_key    TEXT,
    idem_hash   BLOB                     -- of device id and data, to spot a reused key
);
-- The queue: only pending rows, so delivered receipts never slow it down.
CREATE UNIQUE INDEX messages_queue ON messages(device_pk, seq) WHERE status < 2;
CREATE UNIQUE INDEX messages_idem ON messages(license_pk, idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX messages_ttl ON messages(expires_at) WHERE status < 2 AND expires_at IS NOT NULL;
CREATE INDEX messages_done ON messages(updated_at) WHERE status >= 2;
CREATE INDEX messages_device ON messages(device_pk);

CREATE TABLE inbox (
    pk          INTEGER PRIMARY KEY,
    id          BLOB    NOT NULL UNIQUE,
    license_pk  INTEGER NOT NULL,
    device_pk   INTEGER NOT NULL,
    device_id   TEXT    NOT NULL,
    ref         TEXT    NOT NULL,
    data        TEXT,                    -- NULL once acknowledged
    created_at  INTEGER NOT NULL,
    acked_at    INTEGER
);
CREATE INDEX inbox_pending ON inbox(license_pk, pk) WHERE acked_at IS NULL;
CREATE UNIQUE INDEX inbox_ref ON inbox(device_pk, ref);
CREATE INDEX inbox_acked ON inbox(acked_at) WHERE acked_at IS NOT NULL;
