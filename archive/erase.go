package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Erasure is the tombstone of one erasure of a customer (GDPR article 17): who erased, when,
// why, how much of each kind of data, and what was kept. Erase writes it; Erasures reads it.
type Erasure struct {
	CustomerID string // required
	ErasedAt   time.Time
	Actor      string
	Reason     string
	// Erased counts what was erased, by kind. Erase adds "archived_decisions" and
	// "archived_outcomes".
	Erased map[string]int64
	// Kept is what the erasure kept, as the caller describes it: a JSON value (empty means
	// {}). The server keeps the customer's suppression record here, so that a state rebuilt
	// from the archive still holds it.
	Kept json.RawMessage
	// DecisionIDs (Erase's input only) are the ids of the customer's decisions that the
	// store held. Erase marks them erased, also those not archived yet: a relay that copies
	// one of them later skips it.
	DecisionIDs []string
}

// Erase deletes every archived decision of e.CustomerID and the outcomes of those decisions
// and of e.DecisionIDs, marks all these ids erased so that neither Append nor AppendOutcomes
// archives them again, and writes the tombstone, in one transaction. It returns the
// tombstone as written, with the archive's counts added to Erased. Erasing a customer the
// archive knows nothing of writes a tombstone with zero counts.
func (a *Archive) Erase(ctx context.Context, e Erasure) (Erasure, error) {
	if err := a.usable("erase"); err != nil {
		return Erasure{}, err
	}
	if e.CustomerID == "" {
		return Erasure{}, fmt.Errorf("erase: %w: customer id required", ErrInvalid)
	}
	if err := validText("customer id", e.CustomerID); err != nil {
		return Erasure{}, fmt.Errorf("erase: %w", err)
	}
	for _, s := range []string{e.Actor, e.Reason} {
		if err := validText("erasure", s); err != nil {
			return Erasure{}, fmt.Errorf("erase: %w", err)
		}
	}
	if e.ErasedAt.IsZero() {
		e.ErasedAt = a.clock()
	}
	e.ErasedAt = e.ErasedAt.UTC().Truncate(time.Microsecond)
	kept := e.Kept
	if len(kept) == 0 {
		kept = json.RawMessage("{}")
	}
	if !json.Valid(kept) {
		return Erasure{}, fmt.Errorf("erase: %w: kept is not JSON", ErrInvalid)
	}
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return Erasure{}, dbErr("erase", err)
	}
	defer rollback(ctx, tx)
	rows, _ := tx.Query(ctx, `DELETE FROM arbiter.decisions WHERE customer_id = $1 RETURNING decision_id, decided_at`, e.CustomerID)
	type idAt struct {
		ID string
		At time.Time
	}
	gone, err := pgx.CollectRows(rows, pgx.RowToStructByPos[idAt])
	if err != nil {
		return Erasure{}, dbErr("erase decisions", err)
	}
	ids := make([]string, 0, len(gone)+len(e.DecisionIDs))
	ats := make([]time.Time, 0, cap(ids))
	for _, g := range gone {
		ids, ats = append(ids, g.ID), append(ats, g.At)
	}
	for _, id := range e.DecisionIDs {
		// Not archived yet, perhaps never: the erasure's time places the mark, which
		// DropExpired then keeps for the whole retention.
		ids, ats = append(ids, id), append(ats, e.ErasedAt)
	}
	if len(ids) > 0 {
		uids, uats := dedupe(ids, ats)
		if _, err := tx.Exec(ctx, `INSERT INTO arbiter.decision_ids (decision_id, decided_at, erased)
SELECT id, at, true FROM unnest($1::text[], $2::timestamptz[]) AS b(id, at) ORDER BY id COLLATE "C"
ON CONFLICT (decision_id) DO UPDATE SET erased = true`, uids, uats); err != nil {
			return Erasure{}, dbErr("erase: mark decisions", err)
		}
	}
	tag, err := tx.Exec(ctx, `DELETE FROM arbiter.outcomes WHERE decision_id = ANY($1::text[])`, ids)
	if err != nil {
		return Erasure{}, dbErr("erase outcomes", err)
	}
	counts := make(map[string]int64, len(e.Erased)+2)
	for k, v := range e.Erased {
		counts[k] = v
	}
	counts["archived_decisions"] = int64(len(gone))
	counts["archived_outcomes"] = tag.RowsAffected()
	e.Erased = counts
	erased, err := json.Marshal(counts)
	if err != nil {
		return Erasure{}, fmt.Errorf("erase: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO arbiter.erasures (customer_id, erased_at, actor, reason, erased, kept)
VALUES ($1, $2, $3, $4, $5, $6)`, e.CustomerID, e.ErasedAt, e.Actor, e.Reason, string(erased), string(kept)); err != nil {
		return Erasure{}, dbErr("erase: tombstone", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Erasure{}, dbErr("erase: commit", err)
	}
	e.Kept, e.DecisionIDs = kept, nil
	return e, nil
}

// dedupe returns ids and ats without the repeated ids (the first of each stays), for one
// INSERT ... ON CONFLICT, which refuses to touch a row twice.
func dedupe(ids []string, ats []time.Time) ([]string, []time.Time) {
	seen := make(map[string]struct{}, len(ids))
	outIDs, outAts := ids[:0:0], ats[:0:0]
	for i, id := range ids {
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		outIDs, outAts = append(outIDs, id), append(outAts, ats[i])
	}
	return outIDs, outAts
}

// Erasures returns the tombstones of customerID's erasures, oldest first.
func (a *Archive) Erasures(ctx context.Context, customerID string) ([]Erasure, error) {
	if err := a.usable("erasures"); err != nil {
		return nil, err
	}
	rows, _ := a.pool.Query(ctx, `SELECT customer_id, erased_at, actor, reason, erased, kept FROM arbiter.erasures
WHERE customer_id = $1 ORDER BY erased_at, id`, customerID)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Erasure, error) {
		var e Erasure
		var erased, kept []byte
		if err := row.Scan(&e.CustomerID, &e.ErasedAt, &e.Actor, &e.Reason, &erased, &kept); err != nil {
			return e, err
		}
		e.ErasedAt = e.ErasedAt.UTC()
		e.Kept = kept
		return e, json.Unmarshal(erased, &e.Erased)
	})
	if err != nil {
		return nil, dbErr("erasures", err)
	}
	return out, nil
}
