-- 0003: leases and TTLs.
--
-- A lease has a TTL and a deadline on the database's clock (now()), so
-- servers with skewed clocks agree. A key bound to a lease carries the
-- lease id and a copy of its deadline (expires), so that reads filter
-- expired keys without a join; a keep-alive moves both. Lease ids come from
-- a sequence of their own: kv_revision is drawn only by statements that
-- write kv_changes (see 0002).

CREATE SEQUENCE kv_lease_id AS bigint;

CREATE TABLE kv_leases (
    id       bigint PRIMARY KEY,
    ttl_us   bigint NOT NULL,
    deadline timestamptz NOT NULL,
    owner    text NOT NULL
);

ALTER TABLE kv ADD COLUMN lease bigint, ADD COLUMN expires timestamptz;

CREATE INDEX kv_lease_keys ON kv (lease, key) WHERE lease IS NOT NULL;
CREATE INDEX kv_expiring ON kv (expires) WHERE expires IS NOT NULL;
