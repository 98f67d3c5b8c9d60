-- Deliveries are created with their events, from the index rows through which
-- webhook endpoints and listeners name the event types they take; the outbox and
-- the fan-out go. `pending_webhooks` and `delivery_success` are read from the
-- deliveries, so events are no longer rewritten as they are delivered and their
-- `delivery` index rows go. The due index keeps only pending rows, by endpoint,
-- for the claim.
--
-- The target rows get an index of their own: every commit with events looks them
-- up, and through the primary key a plan made while the tables were still empty (a
-- prepared statement's generic plan) matched only `account` and filtered the rest,
-- reading every index row of the account per event: confirms fell from ~2,000/s to
-- ~400/s with both cores in PostgreSQL.
CREATE INDEX object_index_targets ON object_index(account, value) INCLUDE (kind, id)
    WHERE field = 'target_event';
INSERT INTO object_index (account, kind, field, value, seq, id)
SELECT DISTINCT o.account, o.kind, 'target_event', je.value, o.seq, o.id
FROM objects o, json_array_elements_text(o.data::JSON -> 'enabled_events') AS je(value)
WHERE o.kind IN ('webhook_endpoint', 'payground.listener') AND NOT o.deleted
  AND (o.kind = 'payground.listener' OR o.data::JSON ->> 'status' = 'enabled')
ON CONFLICT DO NOTHING;
UPDATE objects o SET index_keys = k.keys
FROM (SELECT seq, json_agg(json_build_array(field, value))::TEXT AS keys
      FROM object_index WHERE kind IN ('webhook_endpoint', 'payground.listener')
      GROUP BY seq) k
WHERE o.seq = k.seq;
INSERT INTO webhook_deliveries
    (account, event_id, endpoint_id, push, status, attempts, next_attempt_at, created_at)
SELECT DISTINCT ob.account, ob.event_id, i.id, i.kind = 'webhook_endpoint', 'pending', 0,
       (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT,
       (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
FROM outbox ob
JOIN objects e ON e.id = ob.event_id
JOIN object_index i ON i.account = ob.account
    AND i.kind IN ('webhook_endpoint', 'payground.listener') AND i.field = 'target_event'
    AND i.value IN (e.data::JSON ->> 'type', '*') AND i.seq < e.seq
ON CONFLICT DO NOTHING;
DROP TABLE outbox;
DELETE FROM object_index WHERE kind = 'event' AND field = 'delivery';
DROP INDEX webhook_deliveries_due;
DROP INDEX webhook_deliveries_by_endpoint;
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(endpoint_id, next_attempt_at)
    WHERE status = 'pending';
