-- The passenger robots (seed 004): robots, passengers, tickets,
-- engineers and their cards, places, the stores on trains, their items,
-- purchases and tasks, and the sign-in challenges and sessions.
-- Its first version: the schema as the files in legacy/ left it (0001-0014).

CREATE TABLE rail_robots (
    id               BLOB PRIMARY KEY,
    license_pk       INTEGER NOT NULL REFERENCES licenses(pk),
    robot_model_id   TEXT NOT NULL,
    robot_model_name TEXT NOT NULL,
    public_key       TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);

CREATE INDEX rail_robots_license ON rail_robots (license_pk, created_at);

CREATE TABLE rail_users (
    id         BLOB PRIMARY KEY,
    license_pk INTEGER NOT NULL REFERENCES licenses(pk),
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX rail_users_license ON rail_users (license_pk, created_at);

CREATE TABLE rail_keycloak_users (
    id         BLOB PRIMARY KEY,
    license_pk INTEGER NOT NULL REFERENCES licenses(pk),
    subject    TEXT NOT NULL,
    user_id    BLOB NOT NULL REFERENCES rail_users(id),
    UNIQUE (license_pk, subject)
);

CREATE TABLE rail_tickets (
    id             BLOB PRIMARY KEY,
    license_pk     INTEGER NOT NULL REFERENCES licenses(pk),
    user_id        BLOB NOT NULL REFERENCES rail_users(id),
    train_number   INTEGER NOT NULL,
    wagon_number   INTEGER NOT NULL,
    place_number   INTEGER NOT NULL,
    date           INTEGER NOT NULL,
    station_id     TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    start_date     INTEGER NOT NULL,
    code           TEXT NOT NULL,
    used           INTEGER NOT NULL DEFAULT 0, used_by BLOB, used_at INTEGER,
    UNIQUE (license_pk, code)
);

CREATE INDEX rail_tickets_user ON rail_tickets (license_pk, user_id, start_date);

CREATE TABLE rail_engineers (
    id         BLOB PRIMARY KEY,
    license_pk INTEGER NOT NULL REFERENCES licenses(pk),
    login      TEXT NOT NULL,
    password   TEXT NOT NULL,
    privileges INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (license_pk, login)
);

CREATE TABLE rail_auth_cards (
    id          BLOB PRIMARY KEY,
    license_pk  INTEGER NOT NULL REFERENCES licenses(pk),
    engineer_id BLOB NOT NULL REFERENCES rail_engineers(id),
    key         BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (license_pk, key)
);

CREATE TABLE rail_hotels (
    id             BLOB PRIMARY KEY,
    license_pk     INTEGER NOT NULL REFERENCES licenses(pk),
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    logo_url       TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);

CREATE INDEX rail_hotels_destination ON rail_hotels (license_pk, destination_id);

CREATE TABLE rail_attractions (
    id             BLOB PRIMARY KEY,
    license_pk     INTEGER NOT NULL REFERENCES licenses(pk),
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    logo_url       TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);

CREATE INDEX rail_attractions_destination ON rail_attractions (license_pk, destination_id);

CREATE TABLE rail_stores (
    id          BLOB PRIMARY KEY,
    license_pk  INTEGER NOT NULL REFERENCES licenses(pk),
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    logo_url    TEXT NOT NULL,
    store_type  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    -- Soft delete: a deleted store keeps its purchases' history.
    deleted_at  INTEGER,
    -- SHA-256 of the staff's store token.
    token       BLOB UNIQUE
);

CREATE INDEX rail_stores_license ON rail_stores (license_pk, created_at);

CREATE TABLE rail_train_stores (
    id           BLOB PRIMARY KEY,
    license_pk   INTEGER NOT NULL REFERENCES licenses(pk),
    store_id     BLOB NOT NULL REFERENCES rail_stores(id),
    train_number INTEGER NOT NULL,
    train_date   INTEGER NOT NULL
);

CREATE INDEX rail_train_stores_train ON rail_train_stores (license_pk, train_number, train_date);

CREATE TABLE rail_active_stores (
    id         BLOB PRIMARY KEY REFERENCES rail_stores(id),
    license_pk INTEGER NOT NULL REFERENCES licenses(pk),
    public_key TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE rail_store_items (
    id          BLOB PRIMARY KEY,
    license_pk  INTEGER NOT NULL REFERENCES licenses(pk),
    store_id    BLOB NOT NULL REFERENCES rail_stores(id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    logo_url    TEXT NOT NULL,
    balance     INTEGER NOT NULL CHECK (balance >= 0),
    price_penny INTEGER NOT NULL,
    category    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);

CREATE INDEX rail_store_items_store ON rail_store_items (license_pk, store_id, created_at);

CREATE TABLE rail_purchases (
    id         BLOB PRIMARY KEY,
    license_pk INTEGER NOT NULL REFERENCES licenses(pk),
    store_id   BLOB NOT NULL REFERENCES rail_stores(id),
    user_id    BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    caller TEXT,
    idempotency_key TEXT,
    fingerprint BLOB
);

CREATE TABLE rail_purchase_items (
    id            BLOB PRIMARY KEY,
    purchase_id   BLOB NOT NULL REFERENCES rail_purchases(id),
    store_item_id BLOB NOT NULL REFERENCES rail_store_items(id),
    count         INTEGER NOT NULL
);

CREATE INDEX rail_purchase_items_purchase ON rail_purchase_items (purchase_id);

CREATE TABLE rail_tasks (
    id              BLOB PRIMARY KEY,
    license_pk      INTEGER NOT NULL REFERENCES licenses(pk),
    store_id        BLOB NOT NULL REFERENCES rail_stores(id),
    user_id         BLOB NOT NULL,
    purchase_id     BLOB NOT NULL REFERENCES rail_purchases(id),
    is_ready        INTEGER NOT NULL,
    additional_data TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    robot_id        BLOB
);

CREATE INDEX rail_tasks_store ON rail_tasks (license_pk, store_id, is_ready, created_at);

CREATE TABLE rail_nonces (
    nonce      TEXT PRIMARY KEY,
    license_pk INTEGER NOT NULL REFERENCES licenses(pk),
    kind       TEXT NOT NULL,
    subject    BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE rail_sessions (
    token      BLOB PRIMARY KEY,
    license_pk INTEGER NOT NULL REFERENCES licenses(pk),
    kind       TEXT NOT NULL,
    subject    BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE INDEX rail_sessions_expiry ON rail_sessions (expires_at);

CREATE UNIQUE INDEX rail_purchases_key ON rail_purchases (license_pk, caller, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
