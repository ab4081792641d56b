-- The operator console (issue 36): an operator's signed-in browser holds
-- a session, hashed at rest, that ends when it expires or they sign out.
CREATE TABLE operator_sessions (
    hash        BLOB PRIMARY KEY,
    operator_id BLOB NOT NULL REFERENCES operators(id),
    expires_at  INTEGER NOT NULL
);

CREATE INDEX operator_sessions_expiry ON operator_sessions (expires_at);
