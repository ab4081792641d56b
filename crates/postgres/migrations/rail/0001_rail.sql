-- Seed 004's base and store tables (rail), each with its license: the same
-- rows as on SQLite. Table names carry `rail_` so they never meet the
-- fleet's users and robots; columns keep seed 004's names.

CREATE TABLE rail_robots (
    id               UUID        PRIMARY KEY,
    license_pk       BIGINT      NOT NULL REFERENCES licenses(pk),
    robot_model_id   TEXT        NOT NULL,
    robot_model_name TEXT        NOT NULL,
    public_key       TEXT        NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX rail_robots_license ON rail_robots (license_pk, created_at);

CREATE TABLE rail_users (
    id         UUID        PRIMARY KEY,
    license_pk BIGINT      NOT NULL REFERENCES licenses(pk),
    name       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX rail_users_license ON rail_users (license_pk, created_at);

CREATE TABLE rail_keycloak_users (
    id         UUID   PRIMARY KEY,
    license_pk BIGINT NOT NULL REFERENCES licenses(pk),
    subject    TEXT   NOT NULL,
    user_id    UUID   NOT NULL REFERENCES rail_users(id),
    UNIQUE (license_pk, subject)
);

CREATE TABLE rail_tickets (
    id             UUID        PRIMARY KEY,
    license_pk     BIGINT      NOT NULL REFERENCES licenses(pk),
    user_id        UUID        NOT NULL REFERENCES rail_users(id),
    train_number   INTEGER     NOT NULL,
    wagon_number   INTEGER     NOT NULL,
    place_number   INTEGER     NOT NULL,
    date           TIMESTAMPTZ NOT NULL,
    station_id     TEXT        NOT NULL,
    destination_id TEXT        NOT NULL,
    start_date     TIMESTAMPTZ NOT NULL,
    code           TEXT        NOT NULL,
    used           BOOLEAN     NOT NULL DEFAULT false,
    UNIQUE (license_pk, code)
);
CREATE INDEX rail_tickets_user ON rail_tickets (license_pk, user_id, start_date);

CREATE TABLE rail_engineers (
    id         UUID        PRIMARY KEY,
    license_pk BIGINT      NOT NULL REFERENCES licenses(pk),
    login      TEXT        NOT NULL,
    password   TEXT        NOT NULL,        -- Argon2id, PHC form
    privileges INTEGER     NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (license_pk, login)
);

CREATE TABLE rail_auth_cards (
    id          UUID        PRIMARY KEY,
    license_pk  BIGINT      NOT NULL REFERENCES licenses(pk),
    engineer_id UUID        NOT NULL REFERENCES rail_engineers(id),
    key         BYTEA       NOT NULL,       -- SHA-256 of the card's key
    created_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (license_pk, key)
);

CREATE TABLE rail_hotels (
    id             UUID        PRIMARY KEY,
    license_pk     BIGINT      NOT NULL REFERENCES licenses(pk),
    name           TEXT        NOT NULL,
    description    TEXT        NOT NULL,
    logo_url       TEXT        NOT NULL,
    destination_id TEXT        NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX rail_hotels_destination ON rail_hotels (license_pk, destination_id);

CREATE TABLE rail_attractions (
    id             UUID        PRIMARY KEY,
    license_pk     BIGINT      NOT NULL REFERENCES licenses(pk),
    name           TEXT        NOT NULL,
    description    TEXT        NOT NULL,
    logo_url       TEXT        NOT NULL,
    destination_id TEXT        NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX rail_attractions_destination ON rail_attractions (license_pk, destination_id);

CREATE TABLE rail_stores (
    id          UUID        PRIMARY KEY,
    license_pk  BIGINT      NOT NULL REFERENCES licenses(pk),
    name        TEXT        NOT NULL,
    description TEXT        NOT NULL,
    logo_url    TEXT        NOT NULL,
    store_type  TEXT        NOT NULL,       -- SHOP | RESTAURANT
    created_at  TIMESTAMPTZ NOT NULL,
    -- Soft delete: a deleted store keeps its purchases' history.
    deleted_at  TIMESTAMPTZ,
    -- SHA-256 of the staff's store token.
    token       BYTEA       UNIQUE
);
CREATE INDEX rail_stores_license ON rail_stores (license_pk, created_at);

CREATE TABLE rail_train_stores (
    id           UUID        PRIMARY KEY,
    license_pk   BIGINT      NOT NULL REFERENCES licenses(pk),
    store_id     UUID        NOT NULL REFERENCES rail_stores(id),
    train_number INTEGER     NOT NULL,
    train_date   TIMESTAMPTZ NOT NULL
);
CREATE INDEX rail_train_stores_train ON rail_train_stores (license_pk, train_number, train_date);

CREATE TABLE rail_active_stores (
    id         UUID        PRIMARY KEY REFERENCES rail_stores(id),
    license_pk BIGINT      NOT NULL REFERENCES licenses(pk),
    public_key TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE rail_store_items (
    id          UUID        PRIMARY KEY,
    license_pk  BIGINT      NOT NULL REFERENCES licenses(pk),
    store_id    UUID        NOT NULL REFERENCES rail_stores(id),
    name        TEXT        NOT NULL,
    description TEXT        NOT NULL,
    logo_url    TEXT        NOT NULL,
    balance     INTEGER     NOT NULL CHECK (balance >= 0),
    price_penny INTEGER     NOT NULL,
    category    TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    deleted_at  TIMESTAMPTZ
);
CREATE INDEX rail_store_items_store ON rail_store_items (license_pk, store_id, created_at);

CREATE TABLE rail_purchases (
    id         UUID        PRIMARY KEY,
    license_pk BIGINT      NOT NULL REFERENCES licenses(pk),
    store_id   UUID        NOT NULL REFERENCES rail_stores(id),
    user_id    UUID        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE rail_purchase_items (
    id            UUID    PRIMARY KEY,
    purchase_id   UUID    NOT NULL REFERENCES rail_purchases(id),
    store_item_id UUID    NOT NULL REFERENCES rail_store_items(id),
    count         INTEGER NOT NULL
);
CREATE INDEX rail_purchase_items_purchase ON rail_purchase_items (purchase_id);

CREATE TABLE rail_tasks (
    id              UUID        PRIMARY KEY,
    license_pk      BIGINT      NOT NULL REFERENCES licenses(pk),
    store_id        UUID        NOT NULL REFERENCES rail_stores(id),
    user_id         UUID        NOT NULL,
    purchase_id     UUID        NOT NULL REFERENCES rail_purchases(id),
    is_ready        BOOLEAN     NOT NULL,
    additional_data JSONB       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    robot_id        UUID
);
CREATE INDEX rail_tasks_store ON rail_tasks (license_pk, store_id, is_ready, created_at);

-- Challenges of robots and store staff signing in with keys: single use.
CREATE TABLE rail_nonces (
    nonce      TEXT        PRIMARY KEY,
    license_pk BIGINT      NOT NULL REFERENCES licenses(pk),
    kind       TEXT        NOT NULL,        -- robot | store
    subject    UUID        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Access tokens issued on a signed challenge: SHA-256 only.
CREATE TABLE rail_sessions (
    token      BYTEA       PRIMARY KEY,
    license_pk BIGINT      NOT NULL REFERENCES licenses(pk),
    kind       TEXT        NOT NULL,        -- robot | store
    subject    UUID        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX rail_sessions_expiry ON rail_sessions (expires_at);
