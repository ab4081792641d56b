-- A device's queue head (next sequence number, pending count) changes with
-- every message queued and every one acknowledged; the binding in `devices`
-- hardly ever. Together, each change rewrote a wide row (device id,
-- presence, times), and a commit spread over 10,000 devices dirtied most of
-- the table's pages (measured: over a third of the pages the writer wrote).
-- Apart, the hot part is a narrow table of a few bytes a device.
-- A device without a row here has an empty queue that starts at 1.
CREATE TABLE queues (
    device_pk   INTEGER PRIMARY KEY,     -- devices.pk, never reused
    next_seq    INTEGER NOT NULL,
    pending     INTEGER NOT NULL         -- queued + sent, kept with every change
);
INSERT INTO queues (device_pk, next_seq, pending)
    SELECT pk, next_seq, pending FROM devices WHERE next_seq > 1 OR pending <> 0;

-- `devices` without the two columns, rebuilt (DROP COLUMN cannot take the
-- last column of a definition that ends in a comment).
CREATE TABLE devices_new (
    pk          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT    NOT NULL UNIQUE, -- one license per device
    license_pk  INTEGER NOT NULL REFERENCES licenses(pk),
    bound_at    INTEGER NOT NULL,
    active      INTEGER NOT NULL DEFAULT 0, -- has ever connected
    last_seen   INTEGER,
    online_conn INTEGER                  -- the open connection's number, if any
);
INSERT INTO devices_new (pk, device_id, license_pk, bound_at, active, last_seen, online_conn)
    SELECT pk, device_id, license_pk, bound_at, active, last_seen, online_conn FROM devices;
-- AUTOINCREMENT's high-water mark goes along: a pk is never reused, not
-- even that of the last device unbound.
DELETE FROM sqlite_sequence WHERE name = 'devices_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'devices_new', seq FROM sqlite_sequence WHERE name = 'devices';
DROP TABLE devices;
ALTER TABLE devices_new RENAME TO devices;
CREATE INDEX devices_license ON devices(license_pk, device_id);
