package featurestore

import (
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/decision"
)

// The Lua scripts of the Redis store. Each touches the keys of one bucket only (one cluster
// slot). Keys built inside a script are completed from a prefix that key() built and the Go
// side passed in. Every script reads and validates everything before its first write: Redis
// does not roll a script back, so a malformed value found halfway would leave a partial write.
//
// Replies are arrays whose first element is a status: 0 done, 1 replay or duplicate,
// 2 conflict or not found, 3 corrupt data (the second element says what).

// luaCommon holds helpers shared by the scripts.
const luaCommon = `
local function split(s)
  local t, i = {}, 1
  while true do
    local j = string.find(s, '\31', i, true)
    if not j then t[#t + 1] = string.sub(s, i); return t end
    t[#t + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end
local function wrongtype(key, want)
  local t = redis.call('TYPE', key)['ok']
  return t ~= 'none' and t ~= want
end
local function uint8(s)
  if not s or not string.match(s, '^%d+$') then return nil end
  local n = tonumber(s)
  if n > 255 then return nil end
  return n
end
local function int(s)
  if not s or not string.match(s, '^-?%d+$') then return nil end
  return tonumber(s)
end
-- ledger_ok reports whether the fields of a ledger member parse.
local function ledger_ok(f)
  return #f == 8 and uint8(f[1]) and int(f[5]) and uint8(f[7]) and uint8(f[8])
end
-- until of a stops value ("until\31reason") or a failing value ("until").
local function until_of(v, stops)
  if stops then
    local j = string.find(v, '\31', 1, true)
    if not j then return nil end
    v = string.sub(v, 1, j - 1)
  end
  return int(v)
end
-- expire_hash drops the fields of a stops or failing hash whose until is not after now and
-- expires the hash at its latest until.
local function expire_hash(key, now, stops)
  local all = redis.call('HGETALL', key)
  local latest = nil
  for i = 1, #all, 2 do
    local u = until_of(all[i + 1], stops)
    if u <= now then
      redis.call('HDEL', key, all[i])
    elseif not latest or u > latest then
      latest = u
    end
  end
  if latest then redis.call('PEXPIRE', key, string.format('%d', latest - now)) end
end
-- set_stop sets a stops-hash field unless the stop in place lasts longer: a stop is never
-- shortened. Both values were validated.
local function set_stop(key, field, value)
  local cur = redis.call('HGET', key, field)
  if cur and until_of(cur, true) >= until_of(value, true) then return end
  redis.call('HSET', key, field, value)
end
-- audit_add appends a decision id to an audit stream and trims the entries older than keep
-- (ms) by Redis's own clock, the clock of the entry ids: an entry is never trimmed while the
-- record it names may still exist, exported or not. MINID ~ trims whole stream nodes only,
-- so trimming costs nothing until a node is entirely out of the window.
local function audit_add(key, keep, id)
  local t = redis.call('TIME')
  local below = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(keep)
  redis.call('XADD', key, 'MINID', '~', string.format('%d', below), '*', 'd', id)
end
-- audit_outcome appends an outcome of a decision to an audit stream, as audit_add does a
-- decision: the outbox of the archive.
local function audit_outcome(key, keep, id, outcome, value)
  local t = redis.call('TIME')
  local below = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(keep)
  redis.call('XADD', key, 'MINID', '~', string.format('%d', below), '*', 'd', id, 'o', outcome, 'v', value)
end
-- valid_hash reports the first field whose until does not parse.
local function valid_hash(key, stops)
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if not until_of(all[i + 1], stops) then return false end
  end
  return true
end
`

// luaLedgerCap holds the constants of the ledger's cap (LedgerCap).
var luaLedgerCap = fmt.Sprintf("local LEDGER_CAP, LEDGER_STOP_AFTER, LEDGER_FULL = %d, %d, %q\n",
	LedgerCap, ledgerStopAfter.Milliseconds(), decision.CodeLedgerFull)

// commitScript is Commit: replay, checks, then every effect.
//
// KEYS: event, decision, messages, ledger, stops, features, recent, audit, version.
// ARGV (fixed): 1 record, 2 decision id, 3 now (ms), 4 retention (ms), 5 audit entries kept (ms),
// 6 summary, 7 message member ("" for none), 8 message score, 9 trim below (ms),
// 10 keep window (ms), 11 recent TTL (ms), 12 decision key prefix, 13 max members,
// 14 version the decision was made on ("" for unknown).
// Then groups, each a count and its items:
// cap checks (name, channel, purposes mask, since, limit), ledger checks (name, kind, card_ref,
// merchant_id, amount, any amount "1"/"0", currency, initiator, since, limit), stop checks
// (name, card_ref, merchant_id, at), ledger entries (member, score), stops (field, value),
// features (name, JSON value, delete "1"/"0").
// Reply: {0} applied, {1, record or false, decision id} replay (false: the record was archived
// and dropped), {2, check name} conflict, {3, what} corrupt data.
// The ledger keeps LedgerCap entries: the script drops the oldest beyond it and stops their
// cards (ledgerStop); a stop never shortens one in place (set_stop).
var commitScript = redis.NewScript(luaCommon + luaLedgerCap + `
local id = redis.call('GET', KEYS[1])
if id then return {1, redis.call('GET', ARGV[12] .. id), id} end

local max = tonumber(ARGV[13])
-- Nothing was added to the messages, ledger or stops since the decision's Load when the
-- version is still the one it read (versions are decision ids, so never reused): the
-- engine's own cap, ledger and stop checks still hold, and are not repeated here.
-- A Load that found no version key (version "0") is fresh too while there is still none.
local cur = redis.call('GET', KEYS[9])
local fresh = ARGV[14] ~= '' and (cur == ARGV[14] or (ARGV[14] == '0' and not cur))
local p = 15
-- The checks are parsed only when they will run.
local ncap = tonumber(ARGV[p]); p = p + 1
local caps = {}
if fresh then p = p + 5 * ncap else
  for i = 1, ncap do
    caps[i] = {ARGV[p], tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4])}
    p = p + 5
  end
end
local nled = tonumber(ARGV[p]); p = p + 1
local leds = {}
if fresh then p = p + 10 * nled else
  for i = 1, nled do
    leds[i] = {ARGV[p], ARGV[p + 1], ARGV[p + 2], ARGV[p + 3], ARGV[p + 4], ARGV[p + 5] == '1', ARGV[p + 6],
      tonumber(ARGV[p + 7]), tonumber(ARGV[p + 8]), tonumber(ARGV[p + 9])}
    p = p + 10
  end
end
local nsc = tonumber(ARGV[p]); local psc = p + 1; p = psc + 4 * nsc
local nent = tonumber(ARGV[p]); local pent = p + 1; p = pent + 2 * nent
local nstop = tonumber(ARGV[p]); local pstop = p + 1; p = pstop + 2 * nstop
local nfeat = tonumber(ARGV[p]); local pfeat = p + 1

-- The type of every key a type-specific command will write (reads fail with WRONGTYPE by
-- themselves, before any write; SET overwrites any type). A fresh commit skips the checks: its
-- Load read the messages, ledger, stops, features and recent keys with commands of their
-- types and nothing was added since, and the audit stream is written first, so a wrong type
-- there fails the script before any other write.
local trimming = nent > 0 and redis.call('ZCARD', KEYS[4]) + nent > LEDGER_CAP
if not fresh then
  local writes = {{7, 'list'}}
  if ARGV[7] ~= '' then writes[#writes + 1] = {3, 'zset'} end
  if nent > 0 then writes[#writes + 1] = {4, 'zset'} end
  if nstop > 0 or trimming then writes[#writes + 1] = {5, 'hash'} end
  if nfeat > 0 then writes[#writes + 1] = {6, 'hash'} end
  for _, kt in ipairs(writes) do
    if wrongtype(KEYS[kt[1]], kt[2]) then return {3, 'wrong key type: ' .. KEYS[kt[1]]} end
  end
end

-- Cap checks against the messages zset.
if ncap > 0 and not fresh then
  local since = caps[1][4]
  for _, c in ipairs(caps) do if c[4] < since then since = c[4] end end
  local ms = redis.call('ZRANGEBYSCORE', KEYS[3], string.format('%d', since), '+inf', 'WITHSCORES', 'LIMIT', 0, max + 1)
  if #ms > 2 * max then return {3, 'messages: too many members'} end
  local msgs = {}
  for i = 1, #ms, 2 do
    local f = split(ms[i])
    if #f ~= 3 then return {3, 'messages: member has ' .. #f .. ' fields'} end
    local ch, pu, sc = uint8(f[2]), uint8(f[3]), tonumber(ms[i + 1])
    if not ch or not pu or not sc then return {3, 'messages: malformed member'} end
    msgs[#msgs + 1] = {ch, pu, sc}
  end
  for _, c in ipairs(caps) do
    local n = 0
    for _, m in ipairs(msgs) do
      if m[3] >= c[4] and (c[2] == 0 or c[2] == m[1]) and math.floor(c[3] / 2 ^ m[2]) % 2 == 1 then n = n + 1 end
    end
    if n >= c[5] then return {2, c[1]} end
  end
end

-- Ledger checks against the ledger zset.
if nled > 0 and not fresh then
  local since = leds[1][9]
  for _, c in ipairs(leds) do if c[9] < since then since = c[9] end end
  local ls = redis.call('ZRANGEBYSCORE', KEYS[4], string.format('%d', since), '+inf', 'WITHSCORES', 'LIMIT', 0, max + 1)
  if #ls > 2 * max then return {3, 'ledger: too many members'} end
  local entries = {}
  for i = 1, #ls, 2 do
    local f, sc = split(ls[i]), tonumber(ls[i + 1])
    if not ledger_ok(f) or not sc then return {3, 'ledger: malformed member'} end
    entries[#entries + 1] = {uint8(f[1]), f[3], f[4], f[5], f[6], uint8(f[7]), sc}
  end
  for _, c in ipairs(leds) do
    local n, kind = 0, tonumber(c[2])
    for _, e in ipairs(entries) do
      if e[7] >= c[9] and e[1] == kind and e[2] == c[3] and (c[4] == '' or c[4] == e[3])
        and (c[6] or c[5] == e[4]) and (c[7] == '' or c[7] == e[5]) and (c[8] == 0 or c[8] == e[6]) then
        n = n + 1
      end
    end
    if n >= c[10] then return {2, c[1]} end
  end
end

if fresh then nsc = 0 end
if (nstop > 0 or nsc > 0 or trimming) and not valid_hash(KEYS[5], true) then return {3, 'stops: malformed value'} end

-- Stop checks against the stops hash: a card-wide stop or one for the merchant, in force at
-- the check's time, fails the check (decision.StopCheck.Blocks).
for i = 0, nsc - 1 do
  local q = psc + 4 * i
  local at = tonumber(ARGV[q + 3])
  local vs = redis.call('HMGET', KEYS[5], ARGV[q + 1] .. '\31', ARGV[q + 1] .. '\31' .. ARGV[q + 2])
  for _, v in ipairs(vs) do
    if v and until_of(v, true) > at then return {2, ARGV[q]} end
  end
end

-- Apply: the audit entry first (see the type checks above).
local now = tonumber(ARGV[3])
audit_add(KEYS[8], ARGV[5], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[8], ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[9])
  redis.call('PEXPIRE', KEYS[3], ARGV[10])
end
-- Stops first: those of the ledger entries the cap drops extend them.
for i = 0, nstop - 1 do
  set_stop(KEYS[5], ARGV[pstop + 2 * i], ARGV[pstop + 2 * i + 1])
end
if nent > 0 then
  for i = 0, nent - 1 do
    redis.call('ZADD', KEYS[4], ARGV[pent + 2 * i + 1], ARGV[pent + 2 * i])
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[9])
  local over = redis.call('ZCARD', KEYS[4]) - LEDGER_CAP
  if over > 0 then
    local dropped = redis.call('ZPOPMIN', KEYS[4], over)
    for i = 1, #dropped, 2 do
      local f = split(dropped[i])
      if #f == 8 then
        set_stop(KEYS[5], f[3] .. '\31', string.format('%d', tonumber(dropped[i + 1]) + LEDGER_STOP_AFTER) .. '\31' .. LEDGER_FULL)
      end
    end
  end
  redis.call('PEXPIRE', KEYS[4], ARGV[10])
end
if nstop > 0 or trimming then expire_hash(KEYS[5], now, true) end
for i = 0, nfeat - 1 do
  local q = pfeat + 3 * i
  if ARGV[q + 2] == '1' then
    redis.call('HDEL', KEYS[6], ARGV[q])
  else
    redis.call('HSET', KEYS[6], ARGV[q], ARGV[q + 1])
  end
end
if ARGV[7] ~= '' or nent > 0 or nstop > 0 then
  redis.call('SET', KEYS[9], ARGV[2], 'PX', ARGV[10])
end
redis.call('LPUSH', KEYS[7], ARGV[6])
redis.call('LTRIM', KEYS[7], 0, 19)
redis.call('PEXPIRE', KEYS[7], ARGV[11])
return {0}
`)

// getDecisionScript reads a decision record and its outcomes.
//
// KEYS: decision, outcomes. Reply: {record or nil, outcomes as a flat field/value array}.
var getDecisionScript = redis.NewScript(`
return {redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[2])}
`)

// outcomeScript is RecordOutcome.
//
// KEYS: decision, outcomes, messages, failing, ledger, audit, features.
// ARGV: 1 outcome field, 2 outcome value, 3 retention (ms), 4 now (ms), 5 message member to
// release ("" for none), 6 failing channel ("" for none), 7 failing until (ms),
// 8 card_ref whose ledger to reset ("" for none), 9 decision id, 10 audit entries kept (ms),
// 11 "1" when the decision is archived (its record may have left the store), else "0",
// 12 "1" to set the customer's opted_out feature (kept without expiry), else "0".
// Reply: {0} applied, {1} duplicate, {2} no such decision, {3, what} corrupt data.
var outcomeScript = redis.NewScript(luaCommon + `
if ARGV[11] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
local types = {{2, 'hash'}, {3, 'zset'}, {4, 'hash'}, {5, 'zset'}, {6, 'stream'}, {7, 'hash'}}
for _, kt in ipairs(types) do
  if wrongtype(KEYS[kt[1]], kt[2]) then return {3, 'wrong key type: ' .. KEYS[kt[1]]} end
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {1} end
if ARGV[6] ~= '' and not valid_hash(KEYS[4], false) then return {3, 'failing: malformed value'} end
local resets = {}
if ARGV[8] ~= '' then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
    local f = split(m)
    if not ledger_ok(f) then return {3, 'ledger: malformed member'} end
    if f[3] == ARGV[8] then resets[#resets + 1] = m end
  end
end

redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if ARGV[5] ~= '' then redis.call('ZREM', KEYS[3], ARGV[5]) end
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[6], ARGV[7])
  expire_hash(KEYS[4], tonumber(ARGV[4]), false)
end
for i = 1, #resets, 1000 do
  redis.call('ZREM', KEYS[5], unpack(resets, i, math.min(i + 999, #resets)))
end
if ARGV[12] == '1' then
  redis.call('HSET', KEYS[7], 'opted_out', 'true')
  redis.call('PERSIST', KEYS[7])
end
audit_outcome(KEYS[6], ARGV[10], ARGV[9], ARGV[1], ARGV[2])
return {0}
`)

// appendScript is AppendDecision: the record and audit entry of a decision that was answered
// without the store. The record key is the decision's, so its presence means the decision was
// appended before (the script is atomic): nothing is written twice. The event key is not set:
// a degraded answer is never an event's idempotent answer, and the event is decided anew when
// it is resent.
//
// KEYS: decision, audit.
// ARGV: 1 record, 2 decision id, 3 retention (ms), 4 audit entries kept (ms).
// Reply: {0} appended, {1} duplicate, {3, what} corrupt data.
var appendScript = redis.NewScript(luaCommon + `
if redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
if wrongtype(KEYS[2], 'stream') then return {3, 'wrong key type: ' .. KEYS[2]} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
audit_add(KEYS[2], ARGV[4], ARGV[2])
return {0}
`)
