package archive

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// ArmStats is what one arm of an experiment did, counted from the archive: per customer, the
// decisions made and the outcomes reported for them.
type ArmStats struct {
	Arm string
	// Customers is the number of distinct customers with a decision in the arm.
	Customers int
	// Decisions, Messages and Retries count the arm's decisions, and those that were MESSAGE
	// and RETRY.
	Decisions, Messages, Retries int
	// Recovered counts the customers with an OUTCOME_PAID or OUTCOME_RETRY_APPROVED,
	// OptedOut those with an OUTCOME_OPTED_OUT, Complained those with an OUTCOME_COMPLAINED.
	Recovered, OptedOut, Complained int
	// TimeToPay holds, per recovered customer, the time from their first decision in the arm
	// to their first payment (0 when the payment was reported as earlier).
	TimeToPay []time.Duration
}

// ArmCustomer is one customer of an experiment arm: their decisions in the arm and what the
// outcomes reported for them say.
type ArmCustomer struct {
	Arm                          string
	Decisions, Messages, Retries int
	// FirstAt is the time of the customer's first decision in the arm.
	FirstAt time.Time
	// PaidAt is the time of the first OUTCOME_PAID or OUTCOME_RETRY_APPROVED; nil for none.
	PaidAt               *time.Time
	OptedOut, Complained bool
}

// AddArmCustomer counts c in its arm's stats: the last of stats when it is c's arm (customers
// come grouped by arm), else a new one appended.
func AddArmCustomer(stats []ArmStats, c *ArmCustomer) []ArmStats {
	if len(stats) == 0 || stats[len(stats)-1].Arm != c.Arm {
		stats = append(stats, ArmStats{Arm: c.Arm})
	}
	s := &stats[len(stats)-1]
	s.Customers++
	s.Decisions += c.Decisions
	s.Messages += c.Messages
	s.Retries += c.Retries
	if c.PaidAt != nil {
		s.Recovered++
		s.TimeToPay = append(s.TimeToPay, max(c.PaidAt.Sub(c.FirstAt), 0))
	}
	if c.OptedOut {
		s.OptedOut++
	}
	if c.Complained {
		s.Complained++
	}
	return stats
}

// experimentCustomers reads an experiment's customers since a time, one row per customer and
// arm: their decisions, and the outcomes reported for those decisions. Degraded decisions are
// left out: they are made without the policy, so in no arm.
const experimentCustomers = `WITH d AS (
    SELECT decision_id, customer_id, experiment_arm, action, decided_at FROM arbiter.decisions
    WHERE experiment_id = $1 AND experiment_id <> '' AND decided_at >= $2 AND NOT degraded
), c AS (
    SELECT experiment_arm, customer_id, count(*) AS decisions,
        count(*) FILTER (WHERE action = 'ACTION_MESSAGE') AS messages,
        count(*) FILTER (WHERE action = 'ACTION_RETRY') AS retries,
        min(decided_at) AS first_at
    FROM d GROUP BY experiment_arm, customer_id
), o AS (
    SELECT d.experiment_arm, d.customer_id,
        min(o.occurred_at) FILTER (WHERE o.outcome IN ('OUTCOME_PAID', 'OUTCOME_RETRY_APPROVED')) AS paid_at,
        bool_or(o.outcome = 'OUTCOME_OPTED_OUT') AS opted_out,
        bool_or(o.outcome = 'OUTCOME_COMPLAINED') AS complained
    FROM d JOIN arbiter.outcomes o USING (decision_id)
    GROUP BY d.experiment_arm, d.customer_id
)
SELECT c.experiment_arm, c.decisions, c.messages, c.retries, c.first_at,
    o.paid_at, coalesce(o.opted_out, false), coalesce(o.complained, false)
FROM c LEFT JOIN o USING (experiment_arm, customer_id)
ORDER BY c.experiment_arm`

// ExperimentArms counts, per arm, what the experiment experimentID did with the decisions
// made since since: customers, decisions, MESSAGE and RETRY answers, and the customers
// recovered, opted out and complaining, from the outcomes reported for those decisions. Arms
// come in name order; an experiment without decisions has none. A customer whose arm changed
// (the experiment's arms were changed between policy versions) counts in each arm.
func (a *Archive) ExperimentArms(ctx context.Context, experimentID string, since time.Time) ([]ArmStats, error) {
	if err := a.usable("experiment arms"); err != nil {
		return nil, err
	}
	rows, err := a.pool.Query(ctx, experimentCustomers, experimentID, since)
	if err != nil {
		return nil, dbErr("experiment arms", err)
	}
	defer rows.Close()
	var out []ArmStats
	var c ArmCustomer
	_, err = pgx.ForEachRow(rows, []any{&c.Arm, &c.Decisions, &c.Messages, &c.Retries, &c.FirstAt, &c.PaidAt, &c.OptedOut, &c.Complained}, func() error {
		out = AddArmCustomer(out, &c)
		return nil
	})
	if err != nil {
		return nil, dbErr("experiment arms", err)
	}
	return out, nil
}
