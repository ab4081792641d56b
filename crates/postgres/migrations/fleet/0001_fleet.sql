-- The fleet (seed 002): users of a license, their sessions (chains of
-- single-use refresh tokens), robots and their pairing, and the key access
-- tokens are signed with.

CREATE TABLE fleet_users (
    id            BIGSERIAL   PRIMARY KEY,
    license_pk    BIGINT      NOT NULL REFERENCES licenses(pk),
    email         TEXT        NOT NULL UNIQUE,  -- lowercase
    name          TEXT        NOT NULL DEFAULT '',
    password_hash TEXT        NOT NULL,         -- Argon2id, PHC form
    role          TEXT        NOT NULL,         -- user | admin
    is_active     BOOLEAN     NOT NULL DEFAULT true,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX fleet_users_license ON fleet_users(license_pk, id);

CREATE TABLE fleet_sessions (
    hash        BYTEA       PRIMARY KEY,        -- SHA-256 of the refresh token
    user_id     BIGINT      NOT NULL,
    chain       TEXT        NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX fleet_sessions_chain ON fleet_sessions(chain);
CREATE INDEX fleet_sessions_user ON fleet_sessions(user_id);

CREATE TABLE fleet_robots (
    id              BIGSERIAL   PRIMARY KEY,
    license_pk      BIGINT,                     -- NULL while pending
    owner_id        BIGINT,
    name            TEXT        NOT NULL,
    hostname        TEXT        NOT NULL,
    ip_address      TEXT,
    architecture    TEXT,
    status          TEXT        NOT NULL,       -- pending | active | inactive | error
    token_hash      BYTEA       UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL,
    last_seen_at    TIMESTAMPTZ,
    pair_code       TEXT        UNIQUE,
    poll_secret     BYTEA,
    pair_expires_at TIMESTAMPTZ,
    paired_at       TIMESTAMPTZ,
    token_delivered BOOLEAN     NOT NULL DEFAULT false
);
CREATE INDEX fleet_robots_license ON fleet_robots(license_pk, owner_id, id);

CREATE TABLE fleet_secrets (
    name        TEXT        PRIMARY KEY,
    value       BYTEA       NOT NULL
);
