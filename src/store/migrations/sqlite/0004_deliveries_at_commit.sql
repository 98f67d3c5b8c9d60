-- Deliveries are created with their events, from the index rows through which
-- webhook endpoints and listeners name the event types they take; the outbox and
-- the fan-out go. `pending_webhooks` and `delivery_success` are read from the
-- deliveries, so events are no longer rewritten as they are delivered and their
-- `delivery` index rows go. Deliveries are keyed by their primary key alone (one
-- b-tree fewer per delivery), and the due index keeps only pending rows, by
-- endpoint, for the claim.
INSERT OR IGNORE INTO object_index (account, kind, field, value, seq, id)
SELECT o.account, o.kind, 'target_event', je.value, o.seq, o.id
FROM objects o, json_each(o.data, '$.enabled_events') je
WHERE o.kind IN ('webhook_endpoint', 'payground.listener') AND o.deleted = 0
  AND (o.kind = 'payground.listener' OR json_extract(o.data, '$.status') = 'enabled');
UPDATE objects SET index_keys = COALESCE((
    SELECT json_group_array(json_array(i.field, i.value))
    FROM object_index i WHERE i.seq = objects.seq), '[]')
WHERE kind IN ('webhook_endpoint', 'payground.listener') AND deleted = 0;
CREATE TABLE webhook_deliveries_keyed (
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
) WITHOUT ROWID;
INSERT INTO webhook_deliveries_keyed
SELECT account, event_id, endpoint_id, push, status, attempts, next_attempt_at,
       lease_owner, lease_expires_at, succeeded_at, created_at
FROM webhook_deliveries;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_keyed RENAME TO webhook_deliveries;
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(endpoint_id, next_attempt_at)
    WHERE status = 'pending';
INSERT OR IGNORE INTO webhook_deliveries
    (account, event_id, endpoint_id, push, status, attempts, next_attempt_at, created_at)
SELECT ob.account, ob.event_id, i.id, i.kind = 'webhook_endpoint', 'pending', 0,
       CAST(unixepoch('subsec') * 1000 AS INTEGER), CAST(unixepoch('subsec') * 1000 AS INTEGER)
FROM outbox ob
JOIN objects e ON e.id = ob.event_id
JOIN object_index i ON i.account = ob.account
    AND i.kind IN ('webhook_endpoint', 'payground.listener') AND i.field = 'target_event'
    AND i.value IN (json_extract(e.data, '$.type'), '*') AND i.seq < e.seq;
DROP TABLE outbox;
DELETE FROM object_index WHERE kind = 'event' AND field = 'delivery';
