-- Each object row keeps its own index keys, so a new version removes its
-- predecessor's index rows by primary key and the by-id index can go.
ALTER TABLE objects ADD COLUMN index_keys TEXT NOT NULL DEFAULT '[]';
UPDATE objects SET index_keys = (
    SELECT json_group_array(json_array(i.field, i.value))
    FROM object_index i WHERE i.seq = objects.seq)
WHERE seq IN (SELECT seq FROM object_index);
DROP INDEX object_index_by_id;
