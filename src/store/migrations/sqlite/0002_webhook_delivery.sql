-- Webhook delivery. The outbox gains a lease so one node fans each row out; every
-- (event, endpoint) pair is a delivery row with its own schedule and lease, and
-- every HTTP attempt is kept. Times are unix milliseconds.
ALTER TABLE outbox ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_by_lease ON outbox(lease_until, seq);
CREATE TABLE webhook_deliveries (
    account TEXT NOT NULL,
    event_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    push INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    succeeded_at INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(push, status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries(endpoint_id, status, next_attempt_at);
CREATE TABLE webhook_attempts (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,
    event_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    attempted_at INTEGER NOT NULL,
    status_code INTEGER,
    latency_ms INTEGER NOT NULL,
    response_body TEXT,
    error TEXT,
    succeeded INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_by_event ON webhook_attempts(event_id, seq);
CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts(endpoint_id, seq);
