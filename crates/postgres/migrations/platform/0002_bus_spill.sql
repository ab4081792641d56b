-- The platform: events too large for a NOTIFY payload (8000 bytes) travel
-- through this table; receivers read them by id (see notify.rs).
CREATE TABLE bus_spill (
    id          BIGSERIAL   PRIMARY KEY,
    payload     TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX bus_spill_created ON bus_spill(created_at);
