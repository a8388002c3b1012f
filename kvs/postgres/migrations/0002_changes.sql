-- 0002: the change log behind watches.
--
-- Every statement that changes kv also inserts the change into kv_changes,
-- in the same statement and so the same transaction: rev is the store
-- revision of the change (kv.version for a put, a revision of its own for
-- a delete or an expiry), kind is 'p' (put), 'd' (delete) or 'e' (expire).
-- Readers take kv_changes in SHARE mode to learn the head: every writer
-- holds ROW EXCLUSIVE on it from before it draws a revision until it
-- commits, so once the lock is granted no revision drawn so far is still
-- uncommitted. kv_compacted holds the revision up to which the log was
-- pruned. A statement trigger notifies kvs_changes_<md5 of the schema> so that
-- servers wake up instead of polling.

CREATE TABLE kv_changes (
    rev   bigint NOT NULL,
    n     bigint NOT NULL DEFAULT 0, -- the place within the revision: a transaction's writes share one
    key   text COLLATE "C" NOT NULL,
    kind  "char" NOT NULL,
    value bytea,
    at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rev, n)
);

CREATE TABLE kv_compacted (
    one bool PRIMARY KEY DEFAULT true CHECK (one),
    rev bigint NOT NULL
);

-- History before this migration is not kept.
INSERT INTO kv_compacted (rev)
SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM kv_revision;

CREATE FUNCTION kv_changes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kvs_changes_' || md5(TG_TABLE_SCHEMA), '');
    RETURN NULL;
END
$$;

CREATE TRIGGER kv_changes_notify AFTER INSERT ON kv_changes
    FOR EACH STATEMENT EXECUTE FUNCTION kv_changes_notify();
