-- License deletion (issue 36): a deleted license's pk is never given to
-- another. licenses.pk is a plain rowid, which SQLite gives again once the
-- highest row is gone; so the highest pk ever given is kept here, and
-- nothing still keyed by an old pk (a partition, an index in memory, a row
-- an interrupted delete left) can ever reach a new license.
CREATE TABLE license_pk_high (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    pk  INTEGER NOT NULL
);
