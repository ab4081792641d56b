-- The relay on PostgreSQL: messages, the inbox, settings and their
-- history, and the Google accounts that follow them. Data is JSONB.

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
