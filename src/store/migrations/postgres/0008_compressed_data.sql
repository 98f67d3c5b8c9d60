-- An object's JSON is stored as bytes, LZ4-compressed against a dictionary of
-- typical objects (`store/object_data.rs`). A confirmed payment is ~9.5 KB of JSON
-- in seven rows, mostly under the 2 KB at which PostgreSQL would compress a value
-- itself; every byte of it was written to the WAL, to a new heap page (whose
-- extension copies a page into the kernel's cache) and later to the data file.
-- Rows written before keep their JSON as it was, which reads as it is.
ALTER TABLE objects ALTER COLUMN data TYPE BYTEA USING convert_to(data, 'UTF8');
