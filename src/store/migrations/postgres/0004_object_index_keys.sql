-- Each object row keeps its own index keys, so a new version removes its
-- predecessor's index rows by primary key and the by-id index can go.
ALTER TABLE objects ADD COLUMN index_keys TEXT NOT NULL DEFAULT '[]';
UPDATE objects o SET index_keys = k.keys
FROM (SELECT seq, json_agg(json_build_array(field, value))::TEXT AS keys
      FROM object_index GROUP BY seq) k
WHERE o.seq = k.seq;
DROP INDEX object_index_by_id;
