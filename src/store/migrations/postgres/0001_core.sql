-- The core tables.
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    secret_key TEXT NOT NULL UNIQUE,
    publishable_key TEXT NOT NULL UNIQUE,
    clock_offset BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL
);
CREATE TABLE objects (
    seq BIGSERIAL PRIMARY KEY,
    account TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created BIGINT NOT NULL,
    version BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX objects_by_id ON objects(id);
CREATE INDEX objects_by_list ON objects(account, kind, seq);
CREATE TABLE object_index (
    account TEXT NOT NULL,
    kind TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    seq BIGINT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (account, kind, field, value, seq)
);
CREATE INDEX object_index_by_id ON object_index(id);
CREATE TABLE idempotency (
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (account, key)
);
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    account TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created BIGINT NOT NULL
);
