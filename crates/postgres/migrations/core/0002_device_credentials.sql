-- Device credentials (issue 34).
-- A license's binding policy: licenses that exist at the upgrade keep
-- 'open' (seed 000's behaviour), so no phone in the field is locked out;
-- new licenses are created 'first_use' by the server.
ALTER TABLE licenses ADD COLUMN binding TEXT NOT NULL DEFAULT 'open';
-- SHA-256 of the device's own secret; NULL: none yet (its next connection
-- gets one, unless the license is 'open').
ALTER TABLE devices ADD COLUMN secret_hash BYTEA;
-- A scoped key admits only the licenses listed for it (none, if they are
-- all deleted: never every license).
ALTER TABLE api_keys ADD COLUMN scoped BOOLEAN NOT NULL DEFAULT false;
CREATE TABLE api_key_licenses (
    key_id     TEXT   NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    license_pk BIGINT NOT NULL REFERENCES licenses(pk) ON DELETE CASCADE,
    PRIMARY KEY (key_id, license_pk)
);
