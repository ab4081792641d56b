-- The core on PostgreSQL: licenses, their tokens, app API keys and device
-- bindings (with the relay's queue head, kept on the device row here).

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
