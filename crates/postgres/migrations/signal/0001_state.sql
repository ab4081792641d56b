-- Call signaling (seed 003) across nodes: the state every node's steps
-- read and write under one advisory lock (see signal.rs). Times are Unix
-- milliseconds, as the state machine keeps them.
CREATE TABLE signal_sockets (
    conn        BIGINT      PRIMARY KEY, -- unique across nodes (see the gateway)
    node        TEXT        NOT NULL,
    user_id     TEXT
);

CREATE INDEX signal_sockets_user ON signal_sockets(user_id);

CREATE INDEX signal_sockets_node ON signal_sockets(node);

CREATE TABLE signal_users (
    user_id     TEXT        PRIMARY KEY,
    doc         JSONB       NOT NULL,
    grace_until BIGINT                   -- set while it has no socket
);

CREATE INDEX signal_users_grace ON signal_users(grace_until) WHERE grace_until IS NOT NULL;

CREATE TABLE signal_offers (
    callee      TEXT        PRIMARY KEY,
    caller      TEXT        NOT NULL,
    deadline    BIGINT      NOT NULL,
    doc         JSONB       NOT NULL
);

CREATE INDEX signal_offers_caller ON signal_offers(caller);

CREATE INDEX signal_offers_deadline ON signal_offers(deadline);

CREATE SEQUENCE signal_calls;
