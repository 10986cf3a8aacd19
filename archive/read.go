package archive

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// scanPage is how many records Scan reads per query.
const scanPage = 1000

// recordColumns are the columns of a Record, in scanRecord's order.
const recordColumns = `decision_id, customer_id, event_id, event_type, action, reasons,
    policy_id, policy_version, policy_digest, decided_at, degraded, record, experiment_id, experiment_arm`

// scanRecord reads one row of recordColumns.
func scanRecord(row pgx.CollectableRow) (Record, error) {
	var r Record
	err := row.Scan(&r.DecisionID, &r.CustomerID, &r.EventID, &r.EventType, &r.Action, &r.Reasons,
		&r.PolicyID, &r.PolicyVersion, &r.PolicyDigest, &r.DecidedAt, &r.Degraded, &r.Body, &r.ExperimentID, &r.ExperimentArm)
	r.DecidedAt = r.DecidedAt.UTC()
	return r, err
}

// Get returns the archived decision with id decisionID, or an error wrapping ErrNotFound.
// It costs two indexed lookups: the decision's time in decision_ids, then the decision in the
// one partition of that day.
func (a *Archive) Get(ctx context.Context, decisionID string) (Record, error) {
	if err := a.usable("get decision"); err != nil {
		return Record{}, err
	}
	var at time.Time
	err := a.pool.QueryRow(ctx, "SELECT decided_at FROM arbiter.decision_ids WHERE decision_id = $1", decisionID).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, dbErr("get decision", err)
	}
	// decided_at = $2 names the partition, so the planner prunes every other one.
	rows, _ := a.pool.Query(ctx, "SELECT "+recordColumns+" FROM arbiter.decisions WHERE decided_at = $2 AND decision_id = $1",
		decisionID, at)
	r, err := pgx.CollectExactlyOneRow(rows, scanRecord)
	if errors.Is(err, pgx.ErrNoRows) {
		// The id outlived its partition: a DropExpired was interrupted between the two.
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, dbErr("get decision", err)
	}
	return r, nil
}

// Outcomes returns the outcomes archived for decisionID, in the order they were recorded,
// or none (and no error) when there are none.
func (a *Archive) Outcomes(ctx context.Context, decisionID string) ([]Outcome, error) {
	if err := a.usable("get outcomes"); err != nil {
		return nil, err
	}
	rows, _ := a.pool.Query(ctx, `SELECT decision_id, outcome, occurred_at, recorded_at, record
FROM arbiter.outcomes WHERE decision_id = $1 ORDER BY recorded_at, outcome`, decisionID)
	outs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Outcome, error) {
		var o Outcome
		err := row.Scan(&o.DecisionID, &o.Outcome, &o.OccurredAt, &o.RecordedAt, &o.Body)
		o.OccurredAt, o.RecordedAt = o.OccurredAt.UTC(), o.RecordedAt.UTC()
		return o, err
	})
	if err != nil {
		return nil, dbErr("get outcomes", err)
	}
	return outs, nil
}

// OutcomesOf returns the outcomes of the decisions ids, in recorded order: one query for a
// customer's history (see CustomerHistory).
func (a *Archive) OutcomesOf(ctx context.Context, ids []string) ([]Outcome, error) {
	if err := a.usable("get outcomes"); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, _ := a.pool.Query(ctx, `SELECT decision_id, outcome, occurred_at, recorded_at, record
FROM arbiter.outcomes WHERE decision_id = ANY($1) ORDER BY recorded_at, decision_id, outcome`, ids)
	outs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Outcome, error) {
		var o Outcome
		err := row.Scan(&o.DecisionID, &o.Outcome, &o.OccurredAt, &o.RecordedAt, &o.Body)
		o.OccurredAt, o.RecordedAt = o.OccurredAt.UTC(), o.RecordedAt.UTC()
		return o, err
	})
	if err != nil {
		return nil, dbErr("get outcomes", err)
	}
	return outs, nil
}

// Scan calls fn with every archived decision decided in [from, to), in decided_at order
// (ties by decision id, byte by byte), for audit exports and for replays past the Redis window. It stops at
// the first error of fn and returns it unwrapped.
//
// Scan reads pages of 1,000 records, each its own query, and calls fn between queries: fn may
// take its time and call the Archive, and a long export holds no snapshot open. Each page sees
// what was committed when it was read, so a scan over days still being written may miss or
// include decisions appended meanwhile; scan closed days for a complete export.
func (a *Archive) Scan(ctx context.Context, from, to time.Time, fn func(Record) error) error {
	if err := a.usable("scan decisions"); err != nil {
		return err
	}
	// The first page starts at from; every next one after the last record of the previous
	// (decided_at >= $1 repeats the row comparison in a form that prunes partitions).
	rows, _ := a.pool.Query(ctx, "SELECT "+recordColumns+` FROM arbiter.decisions
WHERE decided_at >= $1 AND decided_at < $2 ORDER BY decided_at, decision_id LIMIT $3`, from, to, scanPage)
	for {
		page, err := pgx.CollectRows(rows, scanRecord)
		if err != nil {
			return dbErr("scan decisions", err)
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < scanPage {
			return nil
		}
		last := page[len(page)-1]
		rows, _ = a.pool.Query(ctx, "SELECT "+recordColumns+` FROM arbiter.decisions
WHERE decided_at >= $1 AND (decided_at, decision_id) > ($1, $2) AND decided_at < $3
ORDER BY decided_at, decision_id LIMIT $4`,
			last.DecidedAt, last.DecisionID, to, scanPage)
	}
}

// CustomerHistory returns the archived decisions of customerID decided at or after since, in
// decided_at order: what rebuilds a customer's caps, retry ledger and stops after Redis lost
// them. It returns none (and no error) for a customer without decisions.
func (a *Archive) CustomerHistory(ctx context.Context, customerID string, since time.Time) ([]Record, error) {
	if err := a.usable("customer history"); err != nil {
		return nil, err
	}
	rows, _ := a.pool.Query(ctx, "SELECT "+recordColumns+` FROM arbiter.decisions
WHERE customer_id = $1 AND decided_at >= $2 ORDER BY decided_at, decision_id`, customerID, since)
	recs, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return nil, dbErr("customer history", err)
	}
	return recs, nil
}

// PolicyChanges returns the archived policy changes made at or after since, in the order of
// At (ties in the order they were archived).
func (a *Archive) PolicyChanges(ctx context.Context, since time.Time) ([]PolicyChange, error) {
	if err := a.usable("policy changes"); err != nil {
		return nil, err
	}
	rows, _ := a.pool.Query(ctx, `SELECT change_id, kind, version, actor, at, detail
FROM arbiter.policy_changes WHERE at >= $1 ORDER BY at, id`, since)
	changes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (PolicyChange, error) {
		var c PolicyChange
		var detail []byte
		err := row.Scan(&c.ChangeID, &c.Kind, &c.Version, &c.Actor, &c.At, &detail)
		c.At, c.Detail = c.At.UTC(), detail
		return c, err
	})
	if err != nil {
		return nil, dbErr("policy changes", err)
	}
	return changes, nil
}
