-- Device settings: the current document, recent versions (for three-way
-- merges of late writes), and links from accounts to a device's settings.

CREATE TABLE settings (
    device_pk   INTEGER PRIMARY KEY,
    version     INTEGER NOT NULL,
    document    TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT    NOT NULL
);

CREATE TABLE settings_history (
    device_pk   INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    document    TEXT    NOT NULL,
    PRIMARY KEY (device_pk, version)
) WITHOUT ROWID;

CREATE TABLE accounts (
    license_pk  INTEGER NOT NULL,
    account     TEXT    NOT NULL,        -- google:<sub>
    device_pk   INTEGER,                 -- whose settings it follows; NULL once unbound
    snapshot    TEXT,                    -- that device's settings when it was unbound
    linked_at   INTEGER NOT NULL,
    PRIMARY KEY (license_pk, account)
);
CREATE INDEX accounts_device ON accounts(device_pk);
