-- Idempotency records go in a rowid table, in the order they are written, found
-- through a small unique index by (account, key). Keyed by (account, key) WITHOUT
-- ROWID, a record landed wherever its key sorts (the SDKs' keys are random), and
-- an answer over ~1 KB, the most an index b-tree cell holds, spilled into an
-- overflow page: two or three pages written per record, where an append shares its
-- page with the records before it.
CREATE TABLE idempotency_in_order (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created INTEGER NOT NULL
);
INSERT INTO idempotency_in_order (account, key, fingerprint, status, body, created)
SELECT account, key, fingerprint, status, body, created FROM idempotency ORDER BY created;
DROP TABLE idempotency;
ALTER TABLE idempotency_in_order RENAME TO idempotency;
CREATE UNIQUE INDEX idempotency_by_key ON idempotency(account, key);
