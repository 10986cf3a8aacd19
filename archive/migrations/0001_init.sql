-- 0001: the decision archive. Applied by archive.Open inside one transaction, under an
-- advisory lock, after CREATE SCHEMA arbiter and arbiter.schema_migrations exist.
--
-- Ids are compared byte by byte (COLLATE "C"), whatever the database's locale: their order
-- is then the same on every server, and index inserts skip the locale's costlier comparison.

-- decisions holds every archived decision, one partition per UTC day: decisions_YYYYMMDD,
-- FOR VALUES FROM (day 00:00 UTC) TO (next day 00:00 UTC). The archive creates partitions
-- ahead of time and before each batch that needs one, and drops whole partitions past the
-- retention; rows are never deleted one by one. There is no default partition, so a row
-- without a partition fails loudly instead of landing where no retention reaches it.
CREATE TABLE arbiter.decisions (
    decision_id    text        COLLATE "C" NOT NULL,
    customer_id    text        COLLATE "C" NOT NULL,
    event_id       text        NOT NULL,
    event_type     text        NOT NULL,
    action         text        NOT NULL,
    reasons        text[]      NOT NULL,
    policy_id      text        NOT NULL,
    policy_version text        NOT NULL,
    policy_digest  text        NOT NULL,
    decided_at     timestamptz NOT NULL,
    degraded       boolean     NOT NULL,
    record         bytea       NOT NULL,
    -- The primary key must hold the partition key, so it cannot make decision_id unique on its
    -- own (decision_ids below does). In this order it serves Get after decision_ids has given
    -- the partition, and Scan's keyset pages in decided_at order, and new rows append at its
    -- right edge.
    PRIMARY KEY (decided_at, decision_id)
) PARTITION BY RANGE (decided_at);

-- CustomerHistory: a customer's decisions since a time.
CREATE INDEX decisions_customer_idx ON arbiter.decisions (customer_id, decided_at);

-- decision_ids makes decision_id unique across all partitions, which no index on the
-- partitioned table can do. Append inserts here first (ON CONFLICT DO NOTHING) and copies into
-- decisions only the rows this insert returned, in the same transaction: a decision appended
-- twice, also by two relays at once or in a batch re-sent after a crash, is archived once.
-- It also turns Get into one primary-key lookup and one lookup in a single partition, instead
-- of one probe per partition (about 2,190 for six years). DropExpired deletes the rows of
-- dropped days, in batches, by decided_at.
CREATE TABLE arbiter.decision_ids (
    decision_id text        COLLATE "C" PRIMARY KEY,
    decided_at  timestamptz NOT NULL
);
CREATE INDEX decision_ids_decided_at_idx ON arbiter.decision_ids (decided_at);

-- outcomes holds the outcomes reported for decisions, each at most once per decision. It is
-- not partitioned: outcomes are far fewer than decisions, and a unique (decision_id, outcome)
-- across partitions would need another key table. DropExpired deletes, in batches, outcomes
-- recorded before the oldest day it keeps (an outcome is recorded after its decision, so it
-- never leaves before the decision does). An outcome may arrive before its decision: no
-- foreign key.
CREATE TABLE arbiter.outcomes (
    decision_id text        COLLATE "C" NOT NULL,
    outcome     text        COLLATE "C" NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    record      bytea       NOT NULL,
    UNIQUE (decision_id, outcome)
);
CREATE INDEX outcomes_recorded_at_idx ON arbiter.outcomes (recorded_at);

-- policy_changes is the log of changes to the policy configuration: publications,
-- activations, rollbacks, shadow runs. change_id is the caller's stable id of the change (the
-- policy store's), so AppendPolicyChange is idempotent. Kept without retention: the log is
-- small, and every archived decision names the policy version it ran.
CREATE TABLE arbiter.policy_changes (
    id        bigserial   PRIMARY KEY,
    change_id text        COLLATE "C" NOT NULL UNIQUE,
    kind      text        NOT NULL,
    version   text        NOT NULL,
    actor     text        NOT NULL,
    at        timestamptz NOT NULL,
    detail    jsonb       NOT NULL
);
CREATE INDEX policy_changes_at_idx ON arbiter.policy_changes (at);
