-- One-time password-reset links an operator hands a fleet user: one per
-- user at most (a new link replaces the last), the secret only as its hash.
CREATE TABLE fleet_password_resets (
    user_id    INTEGER PRIMARY KEY REFERENCES fleet_users(id),
    hash       BLOB    NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL
);
