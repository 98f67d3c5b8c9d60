-- Webhook delivery, as in the SQLite store. Claims take rows with FOR UPDATE SKIP
-- LOCKED, so several nodes share the work without waiting on each other. Times are
-- unix milliseconds.
ALTER TABLE outbox ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
CREATE INDEX outbox_by_lease ON outbox(lease_until, seq);
CREATE TABLE webhook_deliveries (
    account TEXT NOT NULL,
    event_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    push BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    succeeded_at BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(push, status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries(endpoint_id, status, next_attempt_at);
CREATE TABLE webhook_attempts (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,
    event_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL,
    status_code INTEGER,
    latency_ms BIGINT NOT NULL,
    response_body TEXT,
    error TEXT,
    succeeded BOOLEAN NOT NULL
);
CREATE INDEX webhook_attempts_by_event ON webhook_attempts(event_id, seq);
CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts(endpoint_id, seq);
