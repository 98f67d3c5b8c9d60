-- Every text that a key or an index holds compares as bytes (COLLATE "C"). Under
-- the database's default collation (C.UTF-8 or en_US.UTF-8 on most servers,
-- neither of which PostgreSQL 15 treats as C) each comparison in a B-tree copied
-- both strings and called strcoll; ids, kinds and keys are ASCII, so byte order is
-- the order they already had. The indexes are rebuilt; the rows stay where they
-- are.
ALTER TABLE meta ALTER COLUMN key TYPE TEXT COLLATE "C";
ALTER TABLE accounts
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN secret_key TYPE TEXT COLLATE "C",
    ALTER COLUMN publishable_key TYPE TEXT COLLATE "C";
ALTER TABLE objects
    ALTER COLUMN account TYPE TEXT COLLATE "C",
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN kind TYPE TEXT COLLATE "C";
ALTER TABLE object_index
    ALTER COLUMN account TYPE TEXT COLLATE "C",
    ALTER COLUMN kind TYPE TEXT COLLATE "C",
    ALTER COLUMN field TYPE TEXT COLLATE "C",
    ALTER COLUMN value TYPE TEXT COLLATE "C",
    ALTER COLUMN id TYPE TEXT COLLATE "C";
ALTER TABLE idempotency
    ALTER COLUMN account TYPE TEXT COLLATE "C",
    ALTER COLUMN key TYPE TEXT COLLATE "C";
ALTER TABLE webhook_deliveries
    ALTER COLUMN account TYPE TEXT COLLATE "C",
    ALTER COLUMN event_id TYPE TEXT COLLATE "C",
    ALTER COLUMN endpoint_id TYPE TEXT COLLATE "C",
    ALTER COLUMN status TYPE TEXT COLLATE "C";
ALTER TABLE webhook_attempts
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN account TYPE TEXT COLLATE "C",
    ALTER COLUMN event_id TYPE TEXT COLLATE "C",
    ALTER COLUMN endpoint_id TYPE TEXT COLLATE "C";
