-- The relay's tables: per-device queues and their messages, the inbox of
-- records devices send up, and device settings with their history and the
-- Google accounts that follow them. One schema for the main file and for
-- every partition file (a license's relay data lives in one of them):
-- bindings and licenses stay in the main file, which a partition's
-- connections attach as `hub` (read only), so there are no foreign keys
-- (SQLite cannot check them across files).
-- Its first version: the schema as legacy/ left the main file (0001,
-- 0002, 0003, 0009 there) and partition/0001_relay.sql the partitions.

CREATE TABLE queues (
    device_pk   INTEGER PRIMARY KEY,     -- devices.pk (the main file's), never reused
    next_seq    INTEGER NOT NULL,
    pending     INTEGER NOT NULL         -- queued + sent, kept with every change
);

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
CREATE UNIQUE INDEX messages_queue ON messages(device_pk, seq) WHERE status < 2;
CREATE UNIQUE INDEX messages_idem ON messages(license_pk, idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX messages_ttl ON messages(expires_at) WHERE status < 2 AND expires_at IS NOT NULL;
CREATE INDEX messages_done ON messages(updated_at) WHERE status >= 2;
CREATE INDEX messages_device_keyed ON messages(device_pk) WHERE idem_key IS NOT NULL;

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

CREATE TABLE settings (
    device_pk   INTEGER PRIMARY KEY,
    version     INTEGER NOT NULL,
    document    TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT    NOT NULL
);

CREATE TABLE settings_history (
    device_pk   INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    document    TEXT    NOT NULL,
    PRIMARY KEY (device_pk, version)
) WITHOUT ROWID;

CREATE TABLE accounts (
    license_pk  INTEGER NOT NULL,
    account     TEXT    NOT NULL,        -- google:<sub>
    device_pk   INTEGER,                 -- whose settings it follows; NULL once unbound
    snapshot    TEXT,                    -- that device's settings when it was unbound
    linked_at   INTEGER NOT NULL,
    PRIMARY KEY (license_pk, account)
);
CREATE INDEX accounts_device ON accounts(device_pk);
