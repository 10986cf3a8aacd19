-- 0002: erasures (GDPR article 17). Applied by archive.Open like 0001.

-- erasures holds one tombstone per erasure of a customer: who erased, when, why, how much of
-- each kind of data, and what was kept and why (the suppression record: protective flags,
-- consent denials, frequency-cap reservations, retry ledger entries and stops). The
-- customer's id stays so that what was kept can be found again, for example when a customer's
-- state is rebuilt after Redis lost its data. Kept without retention, like policy_changes.
CREATE TABLE arbiter.erasures (
    id          bigserial   PRIMARY KEY,
    customer_id text        COLLATE "C" NOT NULL,
    erased_at   timestamptz NOT NULL,
    actor       text        NOT NULL,
    reason      text        NOT NULL,
    erased      jsonb       NOT NULL,
    kept        jsonb       NOT NULL
);
CREATE INDEX erasures_customer_idx ON arbiter.erasures (customer_id, erased_at);

-- An erased decision's id stays in decision_ids, marked, so that Append never archives it
-- again (a relay that read it from the outbox before the erasure skips it as a duplicate)
-- and AppendOutcomes skips its outcomes. Adding a column with a constant default rewrites
-- nothing.
ALTER TABLE arbiter.decision_ids ADD COLUMN erased boolean NOT NULL DEFAULT false;
