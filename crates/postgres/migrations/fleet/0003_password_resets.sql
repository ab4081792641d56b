-- One-time password-reset links an operator hands a fleet user: one per
-- user at most (a new link replaces the last), the secret only as its hash.
CREATE TABLE fleet_password_resets (
    user_id    BIGINT      PRIMARY KEY REFERENCES fleet_users(id),
    hash       BYTEA       NOT NULL UNIQUE,
    expires_at TIMESTAMPTZ NOT NULL
);
