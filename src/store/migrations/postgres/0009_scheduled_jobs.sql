-- Work due at a time on an account's clock, as in the SQLite store (its step 7
-- says how `due_at`, `clock` and `runnable_at` relate). Claims take runnable rows
-- with FOR UPDATE SKIP LOCKED, so several nodes share the work without waiting on
-- each other; keys compare as bytes, as every key does since step 6.
CREATE TABLE scheduled_jobs (
    account TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    object TEXT COLLATE "C" NOT NULL,
    due_at BIGINT NOT NULL,
    clock TEXT COLLATE "C",
    runnable_at BIGINT,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account, kind, object)
);
CREATE INDEX scheduled_jobs_runnable ON scheduled_jobs(runnable_at);
