-- 0001: the key-value table and the store-wide revision.
--
-- Run inside the migration transaction with search_path set to the store's
-- schema, so names are unqualified. COLLATE "C" makes key order byte order,
-- the same as the bolt store; the primary key index serves Get and List.

CREATE SEQUENCE kv_revision AS bigint;

CREATE TABLE kv (
    key     text COLLATE "C" PRIMARY KEY,
    value   bytea NOT NULL,
    version bigint NOT NULL,
    updated timestamptz NOT NULL,
    CONSTRAINT kv_key_length CHECK (octet_length(key) BETWEEN 1 AND 1024)
);
