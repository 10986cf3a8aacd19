-- 0003: experiments. Applied by archive.Open like 0001.

-- The experiment and arm a decision was made in ('' for none), copied from the record like
-- the other search columns, so that `arbiter report --experiment` reads columns, not records.
-- Columns with a constant default rewrite nothing; rows archived before keep ''.
ALTER TABLE arbiter.decisions ADD COLUMN experiment_id text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE arbiter.decisions ADD COLUMN experiment_arm text COLLATE "C" NOT NULL DEFAULT '';

-- ExperimentArms: an experiment's decisions since a time. Partial: most decisions are in none.
CREATE INDEX decisions_experiment_idx ON arbiter.decisions (experiment_id, decided_at) WHERE experiment_id <> '';
