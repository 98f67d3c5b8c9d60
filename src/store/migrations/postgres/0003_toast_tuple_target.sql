-- Objects (PaymentIntents, events embedding them) are 1.5-3 KB of JSON, just over
-- the 2 KB at which PostgreSQL starts compressing a row's values: every insert
-- paid for a pglz compression attempt. Rows up to a page stay as written.
ALTER TABLE objects SET (toast_tuple_target = 8160);
ALTER TABLE idempotency SET (toast_tuple_target = 8160);
