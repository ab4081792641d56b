-- relayhub on PostgreSQL: identity, relay, settings, and the nodes that
-- share this database. Message and record data are JSONB.

CREATE TABLE licenses (
    pk          BIGSERIAL PRIMARY KEY,
    number      TEXT        NOT NULL UNIQUE,
    name        TEXT        NOT NULL DEFAULT '',
    expires_at  TIMESTAMPTZ,
    max_devices INTEGER,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE license_tokens (
    id          TEXT        PRIMARY KEY,
    license_pk  BIGINT      NOT NULL REFERENCES licenses(pk) ON DELETE CASCADE,
    hash        BYTEA       NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX license_tokens_license ON license_tokens(license_pk);

CREATE TABLE api_keys (
    id          TEXT        PRIMARY KEY,
    name        TEXT        NOT NULL DEFAULT '',
    hash        BYTEA       NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);

-- Hub nodes serving devices from this database, with a heartbeat.
CREATE TABLE nodes (
    id          TEXT        PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL,
    seen_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE devices (
    pk          BIGSERIAL   PRIMARY KEY,
    device_id   TEXT        NOT NULL UNIQUE,
    license_pk  BIGINT      NOT NULL REFERENCES licenses(pk),
    bound_at    TIMESTAMPTZ NOT NULL,
    active      BOOLEAN     NOT NULL DEFAULT false,
    last_seen   TIMESTAMPTZ,
    online_node TEXT,                    -- the node holding its socket, if any
    online_conn BIGINT,                  -- that socket's number on the node
    next_seq    BIGINT      NOT NULL DEFAULT 1,
    pending     BIGINT      NOT NULL DEFAULT 0
);
CREATE INDEX devices_license ON devices(license_pk, device_id);

CREATE TABLE messages (
    pk          BIGSERIAL   PRIMARY KEY,
    id          UUID        NOT NULL UNIQUE,
    license_pk  BIGINT      NOT NULL,
    device_pk   BIGINT      NOT NULL,
    seq         BIGINT      NOT NULL,
    status      SMALLINT    NOT NULL,    -- 0 queued, 1 sent, 2 delivered, 3 expired
    data        JSONB,                   -- NULL once delivered or expired
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ,
    idem_key    TEXT,
    idem_hash   BYTEA
);
CREATE UNIQUE INDEX messages_queue ON messages(device_pk, seq) WHERE status < 2;
CREATE UNIQUE INDEX messages_idem ON messages(license_pk, idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX messages_ttl ON messages(expires_at) WHERE status < 2 AND expires_at IS NOT NULL;
CREATE INDEX messages_done ON messages(updated_at) WHERE status >= 2;
CREATE INDEX messages_device ON messages(device_pk);

CREATE TABLE inbox (
    pk          BIGSERIAL   PRIMARY KEY,
    id          UUID        NOT NULL UNIQUE,
    license_pk  BIGINT      NOT NULL,
    device_pk   BIGINT      NOT NULL,
    device_id   TEXT        NOT NULL,
    ref         TEXT        NOT NULL,
    data        JSONB,
    created_at  TIMESTAMPTZ NOT NULL,
    acked_at    TIMESTAMPTZ
);
CREATE INDEX inbox_pending ON inbox(license_pk, pk) WHERE acked_at IS NULL;
CREATE UNIQUE INDEX inbox_ref ON inbox(device_pk, ref);
CREATE INDEX inbox_acked ON inbox(acked_at) WHERE acked_at IS NOT NULL;

CREATE TABLE settings (
    device_pk   BIGINT      PRIMARY KEY,
    version     BIGINT      NOT NULL,
    document    JSONB       NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    updated_by  TEXT        NOT NULL
);

CREATE TABLE settings_history (
    device_pk   BIGINT      NOT NULL,
    version     BIGINT      NOT NULL,
    document    JSONB       NOT NULL,
    PRIMARY KEY (device_pk, version)
);

CREATE TABLE accounts (
    license_pk  BIGINT      NOT NULL,
    account     TEXT        NOT NULL,
    device_pk   BIGINT,
    snapshot    JSONB,
    linked_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (license_pk, account)
);
CREATE INDEX accounts_device ON accounts(device_pk);
