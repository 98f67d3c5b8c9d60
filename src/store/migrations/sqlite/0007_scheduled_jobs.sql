-- Work due at a time on an account's clock: one row per job, keyed by account,
-- kind and object (scheduling again replaces the due time), committed with the
-- state change that calls for it and removed by the commit of its handler.
--
-- `due_at` is unix seconds on the job's clock (`clock` NULL: the account's);
-- `runnable_at` is when a claim may take it, in real milliseconds: the due time
-- less the account's clock offset, moved with the offset when the clock is
-- advanced, then the end of a claim's lease while it is held, then the retry
-- time after a failure. So claiming is one range scan of `scheduled_jobs_runnable`
-- whatever the number of accounts, and the earliest `runnable_at` is when the
-- scheduler next has work. NULL (a job on a test clock) is never claimed.
CREATE TABLE scheduled_jobs (
    account TEXT NOT NULL,
    kind TEXT NOT NULL,
    object TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    clock TEXT,
    runnable_at INTEGER,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account, kind, object)
) WITHOUT ROWID;
CREATE INDEX scheduled_jobs_runnable ON scheduled_jobs(runnable_at);
