-- The fleet (seed 002): users of a license, their sessions (chains of
-- single-use refresh tokens), robots and their pairing, and the key access
-- tokens are signed with. Times are Unix milliseconds.

CREATE TABLE fleet_users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    license_pk    INTEGER NOT NULL REFERENCES licenses(pk),
    email         TEXT    NOT NULL UNIQUE,  -- lowercase
    name          TEXT    NOT NULL DEFAULT '',
    password_hash TEXT    NOT NULL,         -- Argon2id, PHC form
    role          TEXT    NOT NULL,         -- user | admin
    is_active     INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX fleet_users_license ON fleet_users(license_pk, id);

CREATE TABLE fleet_sessions (
    hash        BLOB    PRIMARY KEY,        -- SHA-256 of the refresh token
    user_id     INTEGER NOT NULL,
    chain       TEXT    NOT NULL,           -- every token rotated from one login
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    revoked_at  INTEGER
) WITHOUT ROWID;
CREATE INDEX fleet_sessions_chain ON fleet_sessions(chain);
CREATE INDEX fleet_sessions_user ON fleet_sessions(user_id);

CREATE TABLE fleet_robots (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    license_pk      INTEGER,                -- NULL while pending
    owner_id        INTEGER,
    name            TEXT    NOT NULL,
    hostname        TEXT    NOT NULL,
    ip_address      TEXT,
    architecture    TEXT,
    status          TEXT    NOT NULL,       -- pending | active | inactive | error
    token_hash      BLOB    UNIQUE,         -- SHA-256 of the robot's token
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER,
    pair_code       TEXT    UNIQUE,         -- 8 letters; NULL once forgotten
    poll_secret     BLOB,                   -- SHA-256 of the poll secret
    pair_expires_at INTEGER,
    paired_at       INTEGER,
    token_delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX fleet_robots_license ON fleet_robots(license_pk, owner_id, id);

CREATE TABLE fleet_secrets (
    name        TEXT    PRIMARY KEY,
    value       BLOB    NOT NULL
) WITHOUT ROWID;
