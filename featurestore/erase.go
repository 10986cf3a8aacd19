package featurestore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/decision"
)

// Erasure is one erasure of a customer's data (EraseCustomer): the request, and what was
// erased and kept.
type Erasure struct {
	// CustomerID, At, Actor and Reason are the request: who erases whose data, when and why.
	CustomerID string
	At         time.Time
	Actor      string
	Reason     string

	// Erased counts what was erased, by kind: features, decisions, events, outcomes,
	// confirmations, recent_decisions, failing_channels.
	Erased map[string]int64
	// DecisionIDs are the ids of the customer's decisions the store held (records, event
	// keys, recent list), now erased: the archive marks them so that none is archived later.
	DecisionIDs []string
	// Kept is what the erasure kept: the customer's suppression record.
	Kept Kept
}

// Kept is the part of a customer's data that an erasure keeps, because the law requires it
// or because erasing it would make the customer reachable again: the protective features
// that are set (opted_out, fraud_hold, vulnerable, hardship), consent denials
// (consent_<channel>_<purpose> that are not true), the reserved message slots that frequency
// caps count, the retry ledger (card-scheme retry limits and disputes) and retry stops. What
// is kept leaves as it would have: message slots and ledger entries when they age out of
// their windows, stops when they end; the kept features stay.
type Kept struct {
	Features map[string]any         `json:"features,omitempty"`
	Messages []decision.SentMessage `json:"messages,omitempty"`
	Ledger   []decision.LedgerEntry `json:"ledger,omitempty"`
	Stops    []decision.RetryStop   `json:"stops,omitempty"`
}

// StoredErasure is an erasure's tombstone as the store keeps it: everything but the erased
// decision ids.
type StoredErasure struct {
	At     time.Time        `json:"at"`
	Actor  string           `json:"actor"`
	Reason string           `json:"reason,omitempty"`
	Erased map[string]int64 `json:"erased"`
	Kept   Kept             `json:"kept"`
}

// maxErasures is how many tombstones a customer keeps in the store, the newest.
const maxErasures = 16

// keptFeatures returns the features an erasure keeps: the protective ones that are set and
// the consent denials, each as stored.
func keptFeatures(features map[string]any) map[string]any {
	var kept map[string]any
	for name, v := range features {
		keep := decision.IsProtective(name) && decision.IsSet(v)
		if strings.HasPrefix(name, "consent_") {
			granted, ok := v.(bool)
			keep = !ok || !granted // a denial, or a malformed value the guardrails read as one
		}
		if keep {
			if kept == nil {
				kept = map[string]any{}
			}
			kept[name] = v
		}
	}
	return kept
}

// tombstone returns e's tombstone entry, as the store keeps it.
func (e *Erasure) tombstone() (string, error) {
	b, err := json.Marshal(StoredErasure{At: e.At.UTC(), Actor: e.Actor, Reason: e.Reason, Erased: e.Erased, Kept: e.Kept})
	return string(b), err
}

// decodeErasures decodes stored tombstones.
func decodeErasures(k string, raw []string) ([]StoredErasure, error) {
	out := make([]StoredErasure, 0, len(raw))
	for _, s := range raw {
		var e StoredErasure
		if err := json.Unmarshal([]byte(s), &e); err != nil {
			return nil, corrupt(k, "erasure tombstone: %v", err)
		}
		out = append(out, e)
	}
	return out, nil
}

// plan works out an erasure from what the store holds: the customer's state st and the
// decision ids of its event keys. It fills e.Kept and e.DecisionIDs and returns the feature
// fields to delete.
func (e *Erasure) plan(st *decision.State, eventIDs []string) (dropFeatures []string) {
	e.Kept = Kept{Features: keptFeatures(st.Features), Messages: st.Messages, Ledger: st.Ledger, Stops: st.Stops}
	for name := range st.Features {
		if _, keep := e.Kept.Features[name]; !keep {
			dropFeatures = append(dropFeatures, name)
		}
	}
	slices.Sort(dropFeatures)
	ids := slices.Clone(eventIDs)
	for _, r := range st.Recent {
		ids = append(ids, r.DecisionID)
	}
	slices.Sort(ids)
	e.DecisionIDs = slices.Compact(ids)
	e.Erased = map[string]int64{
		"features":         int64(len(dropFeatures)),
		"events":           int64(len(eventIDs)),
		"recent_decisions": int64(len(st.Recent)),
		"failing_channels": int64(len(st.FailingChannels)),
	}
	return dropFeatures
}

func checkErasure(e *Erasure) error {
	if err := checkID("customer id", e.CustomerID, true); err != nil {
		return err
	}
	if e.At.IsZero() {
		return fmt.Errorf("erase customer: %w: time required", ErrInvalid)
	}
	return nil
}

// EraseCustomer implements the store's EraseCustomer: it erases the customer's features
// (but the kept ones), recent-decision list, failing channels, event keys, and the records,
// outcomes and confirmations of the decisions they name; it keeps the suppression record
// (Kept) and appends the tombstone. e's request fields are read; the rest is filled in.
// Erasing a customer the store does not know leaves a tombstone with zero counts.
//
// It reads first (the state and, by SCAN on the customer's node, the event keys), then
// deletes in one MULTI/EXEC, which also notes the erased decision ids in the bucket's erased
// set for the retention, so that the audit exporter counts their records as Erased, not
// Expired. A feature written in between survives: it came after the erasure. SCAN walks the
// node's whole keyspace, so an erasure costs time in proportion to the keys of the node, not
// of the customer.
func (r *Redis) EraseCustomer(ctx context.Context, e *Erasure) error {
	if err := checkErasure(e); err != nil {
		return err
	}
	k := keysOf(e.CustomerID)
	st, err := r.State(ctx, e.CustomerID, e.At)
	if err != nil {
		return fmt.Errorf("erase customer: %w", err)
	}
	eventKeys, eventIDs, err := r.events(ctx, e.CustomerID, k.bucket)
	if err != nil {
		return fmt.Errorf("erase customer: %w", err)
	}
	drop := e.plan(&st, eventIDs)
	var decKeys, outKeys, confKeys []string
	for _, id := range e.DecisionIDs {
		decKeys = append(decKeys, key(keyDecision, k.bucket, "", id))
		outKeys = append(outKeys, key(keyOutcomes, k.bucket, "", id))
		confKeys = append(confKeys, key(keyConfirmations, k.bucket, "", id))
	}
	var dels [3]*redis.IntCmd
	_, err = r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if len(drop) > 0 {
			p.HDel(ctx, k.features, drop...)
		}
		if len(e.Kept.Features) > 0 {
			p.Persist(ctx, k.features)
		}
		p.Del(ctx, k.recent, k.failing)
		if len(eventKeys) > 0 {
			p.Del(ctx, eventKeys...)
		}
		for i, ks := range [][]string{decKeys, outKeys, confKeys} {
			if len(ks) > 0 {
				dels[i] = p.Del(ctx, ks...)
			}
		}
		if len(e.DecisionIDs) > 0 {
			// The audit stream may still name these decisions: the exporter and the relay
			// find their records gone, and tell an erasure from an expiry by this set.
			erased := key(keyErased, k.bucket, "", "")
			at := ms(e.At)
			members := make([]redis.Z, len(e.DecisionIDs))
			for i, id := range e.DecisionIDs {
				members[i] = redis.Z{Score: float64(at), Member: id}
			}
			p.ZAdd(ctx, erased, members...)
			p.ZRemRangeByScore(ctx, erased, "-inf", "("+itoa(at-durMS(r.opts.retention)))
			p.PExpire(ctx, erased, r.opts.retention)
		}
		return nil
	})
	if err != nil {
		return storeErr("erase customer", k.features, err)
	}
	for i, kind := range []string{"decisions", "outcomes", "confirmations"} {
		if dels[i] != nil {
			e.Erased[kind] = dels[i].Val()
		} else {
			e.Erased[kind] = 0
		}
	}
	t, err := e.tombstone()
	if err != nil {
		return fmt.Errorf("erase customer: %w", err)
	}
	gk := key(keyErasures, k.bucket, e.CustomerID, "")
	_, err = r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, gk, t)
		p.LTrim(ctx, gk, -maxErasures, -1)
		return nil
	})
	if err != nil {
		return storeErr("erase customer: tombstone", gk, err)
	}
	return nil
}

// events returns the customer's event keys, found by SCAN on the node that holds the
// customer's bucket, and the decision ids they name, in key order.
func (r *Redis) events(ctx context.Context, customerID string, b bucket) (keys, ids []string, err error) {
	node := redis.Cmdable(r.client)
	if c := r.shards.cluster; c != nil {
		n, err := c.MasterForKey(ctx, bucketTags[b])
		if err != nil {
			return nil, nil, storeErr("find node", bucketTags[b], err)
		}
		node = n
	}
	prefix := key(keyEventPrefix, b, customerID, "")
	match := globEscape(prefix) + "*"
	var cursor uint64
	for {
		page, next, err := node.Scan(ctx, cursor, match, 1000).Result()
		if err != nil {
			return nil, nil, storeErr("scan events", prefix, err)
		}
		keys = append(keys, page...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(keys) == 0 {
		return nil, nil, nil
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	vals, err := r.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, nil, storeErr("read events", prefix, err)
	}
	for _, v := range vals {
		if s, ok := v.(string); ok {
			ids = append(ids, s)
		}
	}
	return keys, ids, nil
}

// globEscape escapes the characters of s that SCAN's MATCH pattern reads as glob syntax.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Erasures returns the customer's erasure tombstones, oldest first.
func (r *Redis) Erasures(ctx context.Context, customerID string) ([]StoredErasure, error) {
	if err := checkID("customer id", customerID, true); err != nil {
		return nil, err
	}
	gk := key(keyErasures, bucketOf(customerID), customerID, "")
	raw, err := r.client.LRange(ctx, gk, 0, -1).Result()
	if err != nil {
		return nil, storeErr("erasures", gk, err)
	}
	return decodeErasures(gk, raw)
}

// DecisionsOf returns the ids of the customer's decisions that the store holds records of:
// those its event keys name (the replay window), in id order. Like EraseCustomer, it SCANs
// the customer's node.
func (r *Redis) DecisionsOf(ctx context.Context, customerID string) ([]string, error) {
	if err := checkID("customer id", customerID, true); err != nil {
		return nil, err
	}
	_, ids, err := r.events(ctx, customerID, bucketOf(customerID))
	if err != nil {
		return nil, fmt.Errorf("decisions of customer: %w", err)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// EraseCustomer implements the store's EraseCustomer on the embedded store (see
// Redis.EraseCustomer).
func (m *Memory) EraseCustomer(ctx context.Context, e *Erasure) error {
	if err := checkErasure(e); err != nil {
		return err
	}
	st, err := m.State(ctx, e.CustomerID, e.At)
	if err != nil {
		return fmt.Errorf("erase customer: %w", err)
	}
	if err := m.lock(ctx, "erase customer"); err != nil {
		return err
	}
	defer m.mu.Unlock()
	k := keysOf(e.CustomerID)
	eventKeys, eventIDs := m.events(e.CustomerID, k.bucket)
	drop := e.plan(&st, eventIDs)
	if f, _ := m.get(k.features, memHash); f != nil {
		for _, name := range drop {
			delete(f.hash, name)
		}
		if len(e.Kept.Features) > 0 {
			f.expireAt = time.Time{}
		}
		m.dropEmpty(k.features)
	}
	delete(m.keys, k.recent)
	delete(m.keys, k.failing)
	for _, ek := range eventKeys {
		delete(m.keys, ek)
	}
	erased := map[string]int64{}
	for _, id := range e.DecisionIDs {
		for kind, kk := range map[string]string{
			"decisions":     key(keyDecision, k.bucket, "", id),
			"outcomes":      key(keyOutcomes, k.bucket, "", id),
			"confirmations": key(keyConfirmations, k.bucket, "", id),
		} {
			if m.live(kk) {
				erased[kind]++
				delete(m.keys, kk)
			}
		}
	}
	for _, kind := range []string{"decisions", "outcomes", "confirmations"} {
		e.Erased[kind] = erased[kind]
	}
	// The embedded audit trail holds records inline: drop the erased ones.
	m.audit[k.bucket] = slices.DeleteFunc(m.audit[k.bucket], func(a auditEntry) bool {
		_, found := slices.BinarySearch(e.DecisionIDs, a.decisionID)
		return found
	})
	t, err := e.tombstone()
	if err != nil {
		return fmt.Errorf("erase customer: %w", err)
	}
	g := m.put(key(keyErasures, k.bucket, e.CustomerID, ""), memList)
	g.list = append(g.list, t)
	if over := len(g.list) - maxErasures; over > 0 {
		g.list = slices.Delete(g.list, 0, over)
	}
	return nil
}

// live reports whether key exists and has not expired.
func (m *Memory) live(key string) bool {
	v := m.keys[key]
	return v != nil && (v.expireAt.IsZero() || m.opts.clock().Before(v.expireAt))
}

// events returns the customer's live event keys and the decision ids they name, in key order.
func (m *Memory) events(customerID string, b bucket) (keys, ids []string) {
	prefix := key(keyEventPrefix, b, customerID, "")
	for kk := range m.keys {
		if strings.HasPrefix(kk, prefix) {
			keys = append(keys, kk)
		}
	}
	slices.Sort(keys)
	live := keys[:0]
	for _, kk := range keys {
		if v, _ := m.get(kk, memString); v != nil {
			live = append(live, kk)
			ids = append(ids, v.str)
		}
	}
	return live, ids
}

// Erasures implements the store's Erasures on the embedded store.
func (m *Memory) Erasures(ctx context.Context, customerID string) ([]StoredErasure, error) {
	if err := checkID("customer id", customerID, true); err != nil {
		return nil, err
	}
	if err := m.lock(ctx, "erasures"); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	gk := key(keyErasures, bucketOf(customerID), customerID, "")
	g, err := m.get(gk, memList)
	if g == nil || err != nil {
		return nil, err
	}
	return decodeErasures(gk, g.list)
}

// DecisionsOf implements the store's DecisionsOf on the embedded store.
func (m *Memory) DecisionsOf(ctx context.Context, customerID string) ([]string, error) {
	if err := checkID("customer id", customerID, true); err != nil {
		return nil, err
	}
	if err := m.lock(ctx, "decisions of customer"); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	_, ids := m.events(customerID, bucketOf(customerID))
	slices.Sort(ids)
	return slices.Compact(ids), nil
}
