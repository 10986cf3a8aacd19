package featurestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/arbiter-dev/arbiter/decision"
)

// Confirmation is one Confirm of a decision (DecisionService/Confirm): the answer given and,
// when it revokes the decision, the reservations it gives back.
type Confirmation struct {
	CustomerID string
	DecisionID string
	CheckedAt  time.Time
	Proceed    bool
	// Reasons are the answer's reason codes.
	Reasons []string
	// Message is the decision's reserved message slot and Retry its retry-ledger entry, each
	// nil when it has none; they are released when Proceed is false.
	Message *decision.SentMessage
	Retry   *decision.LedgerEntry
}

// StoredConfirmation is a confirmation as recorded on a decision.
type StoredConfirmation struct {
	Proceed   bool
	Reasons   []string
	CheckedAt time.Time
}

// maxConfirmations is how many confirmations a decision keeps, the newest.
const maxConfirmations = 16

// confirmScript records a confirmation. A revocation recorded earlier is final: the script
// then returns it and writes nothing, so a revoked decision's reservations are released once.
//
// KEYS: confirmations, messages, ledger.
// ARGV: 1 entry, 2 "1" proceed / "0" revoke, 3 retention (ms), 4 message member to release
// ("" for none), 5 ledger member to release ("" for none), 6 entries kept.
// Reply: nil recorded, or the earlier revocation's entry.
var confirmScript = redis.NewScript(`
local prev = redis.call('LRANGE', KEYS[1], 0, -1)
for i = 1, #prev do
  local p = prev[i]
  local a = string.find(p, '\31', 1, true)
  if a and string.sub(p, a + 1, a + 1) == '0' then return p end
end
if ARGV[2] == '0' then
  if ARGV[4] ~= '' then redis.call('ZREM', KEYS[2], ARGV[4]) end
  if ARGV[5] ~= '' then redis.call('ZREM', KEYS[3], ARGV[5]) end
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[6]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return false
`)

// confirmEntry encodes c as a confirmations list entry: time (ms), "1" or "0", reason codes
// joined by ",".
func confirmEntry(c *Confirmation) string {
	p := "0"
	if c.Proceed {
		p = "1"
	}
	return itoa(ms(c.CheckedAt)) + sep + p + sep + strings.Join(c.Reasons, ",")
}

func decodeConfirmation(key, v string) (StoredConfirmation, error) {
	var f [3]string
	if n := splitFields(v, f[:]); n != len(f) || (f[1] != "0" && f[1] != "1") {
		return StoredConfirmation{}, corrupt(key, "confirmation %q", v)
	}
	at, err := parseMS(key, "confirmation time", f[0])
	if err != nil {
		return StoredConfirmation{}, err
	}
	var reasons []string
	if f[2] != "" {
		reasons = strings.Split(f[2], ",")
	}
	return StoredConfirmation{Proceed: f[1] == "1", Reasons: reasons, CheckedAt: at}, nil
}

// confirmArgs checks c and returns its keys and members.
func confirmArgs(c *Confirmation) (conf string, k customerKeys, msg, ledger string, err error) {
	b, err := bucketOfDecisionID(c.DecisionID)
	if err != nil {
		return "", k, "", "", fmt.Errorf("confirm: %w", err)
	}
	if err := checkID("customer id", c.CustomerID, true); err != nil {
		return "", k, "", "", err
	}
	for _, r := range c.Reasons {
		if err := checkID("reason code", r, true); err != nil || strings.Contains(r, ",") {
			return "", k, "", "", fmt.Errorf("%w: reason code %q", ErrInvalid, r)
		}
	}
	k = keysOf(c.CustomerID)
	if k.bucket != b {
		return "", k, "", "", fmt.Errorf("%w: decision %s is not customer %s's", ErrInvalid, c.DecisionID, c.CustomerID)
	}
	if c.Message != nil {
		msg = messageMember(c.Message)
	}
	if c.Retry != nil {
		ledger = ledgerMember(c.Retry)
	}
	return key(keyConfirmations, b, "", c.DecisionID), k, msg, ledger, nil
}

// Confirm records c on its decision and, when c revokes it, releases its reservations, in
// one round trip. When the decision was revoked before, that revocation stands: Confirm
// returns it and records nothing.
func (r *Redis) Confirm(ctx context.Context, c *Confirmation) (*StoredConfirmation, error) {
	conf, k, msg, ledger, err := confirmArgs(c)
	if err != nil {
		return nil, err
	}
	proceed := "0"
	if c.Proceed {
		proceed = "1"
	}
	v, err := confirmScript.Run(ctx, r.client, []string{conf, k.messages, k.ledger},
		confirmEntry(c), proceed, r.retentionArg, msg, ledger, maxConfirmations).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr("confirm", conf, err)
	}
	s, ok := v.(string)
	if !ok {
		return nil, corrupt(conf, "confirm reply %T", v)
	}
	prior, err := decodeConfirmation(conf, s)
	if err != nil {
		return nil, err
	}
	return &prior, nil
}

// Confirmations returns the confirmations recorded on a decision, oldest first.
func (r *Redis) Confirmations(ctx context.Context, decisionID string) ([]StoredConfirmation, error) {
	b, err := bucketOfDecisionID(decisionID)
	if err != nil {
		return nil, fmt.Errorf("confirmations: %w", err)
	}
	conf := key(keyConfirmations, b, "", decisionID)
	list, err := r.client.LRange(ctx, conf, 0, -1).Result()
	if err != nil {
		return nil, storeErr("confirmations", conf, err)
	}
	return decodeConfirmations(conf, list)
}

func decodeConfirmations(key string, list []string) ([]StoredConfirmation, error) {
	var out []StoredConfirmation
	for _, v := range list {
		c, err := decodeConfirmation(key, v)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Confirm implements the store's Confirm.
func (m *Memory) Confirm(ctx context.Context, c *Confirmation) (*StoredConfirmation, error) {
	conf, k, msg, ledger, err := confirmArgs(c)
	if err != nil {
		return nil, err
	}
	if err := m.lock(ctx, "confirm"); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	for _, kk := range []struct {
		key  string
		kind memKind
	}{{conf, memList}, {k.messages, memZset}, {k.ledger, memZset}} {
		if err := m.check(kk.key, kk.kind); err != nil {
			return nil, fmt.Errorf("confirm: %w", err)
		}
	}
	if l, _ := m.get(conf, memList); l != nil {
		for _, v := range l.list {
			prior, err := decodeConfirmation(conf, v)
			if err != nil {
				return nil, err
			}
			if !prior.Proceed {
				return &prior, nil
			}
		}
	}
	if !c.Proceed {
		for _, rel := range []struct{ key, member string }{{k.messages, msg}, {k.ledger, ledger}} {
			if rel.member == "" {
				continue
			}
			if z, _ := m.get(rel.key, memZset); z != nil {
				delete(z.zset, rel.member)
				m.dropEmpty(rel.key)
			}
		}
	}
	l := m.put(conf, memList)
	l.list = append(l.list, confirmEntry(c))
	if n := len(l.list); n > maxConfirmations {
		l.list = l.list[n-maxConfirmations:]
	}
	m.expire(l, m.opts.retention)
	return nil, nil
}

// Confirmations implements the store's Confirmations.
func (m *Memory) Confirmations(ctx context.Context, decisionID string) ([]StoredConfirmation, error) {
	b, err := bucketOfDecisionID(decisionID)
	if err != nil {
		return nil, fmt.Errorf("confirmations: %w", err)
	}
	if err := m.lock(ctx, "confirmations"); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	conf := key(keyConfirmations, b, "", decisionID)
	l, err := m.get(conf, memList)
	if err != nil || l == nil {
		return nil, err
	}
	return decodeConfirmations(conf, l.list)
}

// ConfirmRead is what a Confirm reads (ReadForConfirm): the decision's record and outcomes,
// and the state of the customer the record names, read together.
type ConfirmRead struct {
	Record   []byte
	Outcomes []StoredOutcome
	// CustomerID is the customer the record names, whose State was read; "" when the record
	// names none the store could read (State is then empty: read it with State).
	CustomerID string
	State      decision.State
}

// confirmReadScript reads a decision's record and outcomes and the state of the customer the
// record names, in one round trip: the customer id is field 4 of the encoded
// arbiterv1.DecisionRecord, read in the script. The customer's keys share the decision's
// bucket, so they are in the decision's slot.
//
// KEYS: decision, outcomes.
// ARGV: 1 the bucket's customer key prefix ("{b:XX}:c:"), 2 since (ms), 3 members read at
// most, 4 recent entries read.
// Reply: {false} no such decision; {record, outcomes} when the record names no customer;
// else {record, outcomes, customer id, features, messages, ledger, stops, failing, recent},
// as Load reads them.
var confirmReadScript = redis.NewScript(`
local rec = redis.call('GET', KEYS[1])
if not rec then return {false} end
local outs = redis.call('HGETALL', KEYS[2])
local i, n, cust = 1, #rec, nil
local function varint()
  local v, s = 0, 1
  for _ = 1, 10 do
    if i > n then return nil end
    local b = string.byte(rec, i)
    i = i + 1
    v = v + (b % 128) * s
    if b < 128 then return v end
    s = s * 128
  end
  return nil
end
while i <= n do
  local tag = varint()
  if not tag then break end
  local field, wt = math.floor(tag / 8), tag % 8
  if field > 4 then break end
  if wt == 0 then
    if not varint() then break end
  elseif wt == 2 then
    local l = varint()
    if not l or i + l - 1 > n then break end
    if field == 4 then cust = string.sub(rec, i, i + l - 1) break end
    i = i + l
  elseif wt == 1 then i = i + 8
  elseif wt == 5 then i = i + 4
  else break end
end
if not cust or cust == '' then return {rec, outs} end
local stem = ARGV[1] .. string.gsub(string.gsub(cust, '%%', '%%25'), ':', '%%3A') .. ':'
return {rec, outs, cust,
  redis.call('HGETALL', stem .. 'f'),
  redis.call('ZRANGEBYSCORE', stem .. 'm', ARGV[2], '+inf', 'WITHSCORES', 'LIMIT', 0, ARGV[3]),
  redis.call('ZRANGEBYSCORE', stem .. 'l', ARGV[2], '+inf', 'WITHSCORES', 'LIMIT', 0, ARGV[3]),
  redis.call('HGETALL', stem .. 's'),
  redis.call('HGETALL', stem .. 'x'),
  redis.call('LRANGE', stem .. 'r', 0, tonumber(ARGV[4]) - 1)}
`)

// ReadForConfirm reads, in one round trip, a decision's record and outcomes and the state at
// now of the customer the record names (see ConfirmRead). A decision it does not hold is
// ErrNotFound.
func (r *Redis) ReadForConfirm(ctx context.Context, decisionID string, now time.Time) (*ConfirmRead, error) {
	b, err := bucketOfDecisionID(decisionID)
	if err != nil {
		return nil, fmt.Errorf("read for confirm: %w", err)
	}
	rk, ok := key(keyDecision, b, "", decisionID), key(keyOutcomes, b, "", decisionID)
	v, err := confirmReadScript.Run(ctx, r.client, []string{rk, ok}, bucketTags[b]+":c:",
		ms(now.Add(-loadWindow)), r.loadLimitArg, recentLen).Result()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	if err != nil {
		return nil, storeErr("read for confirm", rk, err)
	}
	arr, _ := v.([]any)
	if len(arr) == 0 || arr[0] == nil {
		return nil, fmt.Errorf("read for confirm %s: %w", rk, ErrNotFound)
	}
	rec, isStr := arr[0].(string)
	if !isStr || len(rec) > maxRecordBytes {
		return nil, fmt.Errorf("read for confirm: %w", corrupt(rk, "record of %d bytes", len(rec)))
	}
	flat, err := replyStrings(ok, elem(arr, 1))
	if err != nil {
		return nil, fmt.Errorf("read for confirm: %w", err)
	}
	out := &ConfirmRead{Record: []byte(rec)}
	if out.Outcomes, err = decodeOutcomes(ok, flat); err != nil {
		return nil, fmt.Errorf("read for confirm: %w", err)
	}
	cust, _ := elem(arr, 2).(string)
	if cust == "" || checkID("customer id", cust, true) != nil || bucketOf(cust) != b {
		return out, nil // no customer the store can read: the caller reads the state itself
	}
	k := keysOf(cust)
	var raw rawState
	for i, dst := range raw.lists(&k) {
		if *dst.p, err = replyStrings(dst.key, elem(arr, 3+i)); err != nil {
			return nil, fmt.Errorf("read for confirm: %w", err)
		}
	}
	if len(raw.features) > 2*maxFeatures {
		return nil, fmt.Errorf("read for confirm: %w", corrupt(k.features, "too many fields"))
	}
	if out.State, err = raw.decode(&k, now); err != nil {
		return nil, fmt.Errorf("read for confirm: %w", err)
	}
	out.CustomerID = cust
	return out, nil
}

// ReadForConfirm implements the store's ReadForConfirm on the embedded store.
func (m *Memory) ReadForConfirm(ctx context.Context, decisionID string, now time.Time) (*ConfirmRead, error) {
	rec, outs, err := m.GetDecision(ctx, decisionID)
	if err != nil {
		return nil, fmt.Errorf("read for confirm: %w", err)
	}
	out := &ConfirmRead{Record: rec, Outcomes: outs}
	cust := recordCustomer(rec)
	b, _ := bucketOfDecisionID(decisionID)
	if cust == "" || checkID("customer id", cust, true) != nil || bucketOf(cust) != b {
		return out, nil
	}
	if out.State, err = m.State(ctx, cust, now); err != nil {
		return nil, fmt.Errorf("read for confirm: %w", err)
	}
	out.CustomerID = cust
	return out, nil
}

// recordCustomer returns the customer id of an encoded arbiterv1.DecisionRecord (field 4), as
// confirmReadScript reads it: "" when the fields before it do not parse or it is absent.
func recordCustomer(rec []byte) string {
	for len(rec) > 0 {
		num, typ, n := protowire.ConsumeTag(rec)
		if n < 0 || num > 4 {
			return ""
		}
		rec = rec[n:]
		if num == 4 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(rec)
			if n < 0 {
				return ""
			}
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, rec)
		if n < 0 {
			return ""
		}
		rec = rec[n:]
	}
	return ""
}
