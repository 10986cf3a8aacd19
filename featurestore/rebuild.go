package featurestore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/decision"
)

// Rebuilt is a customer's state recomputed from recorded decisions and outcomes (the decision
// archive), for Rebuild: what the decisions of the state window reserved and appended, less
// what their outcomes released.
type Rebuilt struct {
	// Messages are the reserved message slots, each with its DecisionID.
	Messages []decision.SentMessage
	// Ledger holds the retry-ledger entries, oldest first; Rebuild keeps the newest LedgerCap.
	Ledger []decision.LedgerEntry
	// Stops are the retry stops the decisions set.
	Stops []decision.RetryStop
	// Failing are the channels marked failing by outcomes, with the time they recover.
	Failing map[decision.Channel]time.Time
}

// rebuildScript is Rebuild: it merges a recomputed state into the customer's keys, as commits
// and outcomes would have written it, and sets the state marker. Members are unique (a
// message is its decision, a ledger entry its event), so merging what is there already, or
// rebuilding twice at once, changes nothing; a stop is never shortened.
//
// KEYS: messages, ledger, stops, failing, marker.
// ARGV: 1 now (ms), 2 trim below (ms), 3 keep window (ms), then groups, each a count and its
// items: messages (member, score), ledger entries (member, score), stops (field, value),
// failing (field, until).
// Reply: {0} done, {3, what} corrupt data.
var rebuildScript = redis.NewScript(luaCommon + luaLedgerCap + `
local types = {{1, 'zset'}, {2, 'zset'}, {3, 'hash'}, {4, 'hash'}}
for _, kt in ipairs(types) do
  if wrongtype(KEYS[kt[1]], kt[2]) then return {3, 'wrong key type: ' .. KEYS[kt[1]]} end
end
if not valid_hash(KEYS[3], true) then return {3, 'stops: malformed value'} end
if not valid_hash(KEYS[4], false) then return {3, 'failing: malformed value'} end
local now, p = tonumber(ARGV[1]), 4
local n = tonumber(ARGV[p]); p = p + 1
for i = 0, n - 1 do redis.call('ZADD', KEYS[1], ARGV[p + 2 * i + 1], ARGV[p + 2 * i]) end
p = p + 2 * n
if n > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
n = tonumber(ARGV[p]); p = p + 1
for i = 0, n - 1 do redis.call('ZADD', KEYS[2], ARGV[p + 2 * i + 1], ARGV[p + 2 * i]) end
p = p + 2 * n
if n > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2])
  local over = redis.call('ZCARD', KEYS[2]) - LEDGER_CAP
  if over > 0 then redis.call('ZPOPMIN', KEYS[2], over) end
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
n = tonumber(ARGV[p]); p = p + 1
for i = 0, n - 1 do set_stop(KEYS[3], ARGV[p + 2 * i], ARGV[p + 2 * i + 1]) end
p = p + 2 * n
if n > 0 then expire_hash(KEYS[3], now, true) end
n = tonumber(ARGV[p]); p = p + 1
for i = 0, n - 1 do
  local cur = redis.call('HGET', KEYS[4], ARGV[p + 2 * i])
  if not cur or tonumber(cur) < tonumber(ARGV[p + 2 * i + 1]) then
    redis.call('HSET', KEYS[4], ARGV[p + 2 * i], ARGV[p + 2 * i + 1])
  end
end
if n > 0 then expire_hash(KEYS[4], now, false) end
redis.call('SET', KEYS[5], ARGV[1], 'PX', ARGV[3])
return {0}
`)

// Rebuild merges st, a customer's state recomputed from the decision archive, into the
// customer's keys, atomically, and marks the state whole (WithStateMarker): the next Load
// does not report Unverified for the state window. Entries older than the state window are
// ignored; the ledger keeps its newest LedgerCap entries.
func (r *Redis) Rebuild(ctx context.Context, customerID string, st *Rebuilt, now time.Time) error {
	if err := checkID("customer id", customerID, true); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	k := keysOf(customerID)
	below := now.Add(-keepWindow)
	args := []any{ms(now), ms(below), r.keepArg}
	var msgs []any
	for i := range st.Messages {
		m := &st.Messages[i]
		if err := checkMessage(m); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		if m.At.Before(below) {
			continue
		}
		msgs = append(msgs, messageMember(m), ms(m.At))
	}
	args = append(append(args, len(msgs)/2), msgs...)
	ledger := st.Ledger
	if len(ledger) > LedgerCap {
		ledger = ledger[len(ledger)-LedgerCap:]
	}
	var led []any
	for i := range ledger {
		e := &ledger[i]
		if err := checkLedger(e); err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		if e.At.Before(below) {
			continue
		}
		led = append(led, ledgerMember(e), ms(e.At))
	}
	args = append(append(args, len(led)/2), led...)
	args = append(args, len(st.Stops))
	for i := range st.Stops {
		args = append(args, stopField(&st.Stops[i]), stopValue(&st.Stops[i]))
	}
	chans := make([]decision.Channel, 0, len(st.Failing))
	for ch := range st.Failing {
		chans = append(chans, ch)
	}
	slices.Sort(chans)
	args = append(args, len(chans))
	for _, ch := range chans {
		args = append(args, utoa(ch), ms(st.Failing[ch]))
	}
	keys := []string{k.messages, k.ledger, k.stops, k.failing, k.kept}
	if _, _, err := r.runStatus(ctx, rebuildScript, "rebuild", k.kept, keys, args...); err != nil {
		return err
	}
	return nil
}
