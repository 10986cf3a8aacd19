package policystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/decision"
)

// PolicyChannel is the Redis Pub/Sub channel on which a Redis announces every
// activation, rollback and shadow change, so replicas switch without waiting for their
// periodic check.
const PolicyChannel = "arbiter:policy"

// policyKey builds every Redis key of the policy store. All share the hash tag {policy}, so
// the scripts touch one slot in a Redis Cluster. The schema:
//
//	{policy}:v:<version>           hash: digest, meta (JSON PolicyVersion), files (JSON)
//	{policy}:versions              sorted set: version by publication time (ms)
//	{policy}:active                string: the active version
//	{policy}:history               list: activated versions, oldest first; tail = active
//	{policy}:changes               stream: the append-only change log
//	{policy}:shadow                hash: version, share, epoch, since
//	{policy}:shadow:<epoch>        hash: shadow counters of one shadow run
//	{policy}:shadow:<epoch>:samples list: JSON ShadowSample, newest first
func policyKey(parts ...string) string {
	return "{policy}:" + strings.Join(parts, ":")
}

// Redis keeps policy versions and their governance in Redis. It is safe for
// concurrent use; replicas sharing one Redis share one configuration.
type Redis struct {
	rdb redis.UniversalClient
}

// NewRedis returns a policy store over rdb. The client's timeouts and
// ContextTimeoutEnabled setting apply to every call.
func NewRedis(rdb redis.UniversalClient) *Redis {
	return &Redis{rdb: rdb}
}

// publishScript stores a new version unless it exists. KEYS: version hash, versions set,
// changes. ARGV: version, digest, meta, files, created ms, actor, at, comment.
var publishScript = redis.NewScript(`
local d = redis.call('HGET', KEYS[1], 'digest')
if d then
  if d == ARGV[2] then return {'exists', redis.call('HGET', KEYS[1], 'meta')} end
  return {'conflict'}
end
redis.call('HSET', KEYS[1], 'digest', ARGV[2], 'meta', ARGV[3], 'files', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'kind', 'publish', 'actor', ARGV[6], 'at', ARGV[7],
  'from', '', 'to', ARGV[1], 'comment', ARGV[8], 'share', '0')
return {'ok'}
`)

// activateScript points the fleet at a version. KEYS: active, history, changes, version hash.
// ARGV: version, actor, at, comment, channel, history length.
var activateScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[4]) == 0 then return {'notfound'} end
local from = redis.call('GET', KEYS[1]) or ''
if from == ARGV[1] then return {'active'} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[6]), -1)
local id = redis.call('XADD', KEYS[3], '*', 'kind', 'activate', 'actor', ARGV[2], 'at', ARGV[3],
  'from', from, 'to', ARGV[1], 'comment', ARGV[4], 'share', '0')
redis.call('PUBLISH', ARGV[5], 'activate:' .. ARGV[1])
return {'ok', from, id}
`)

// approveScript records an approval of a published version. KEYS: version, changes. ARGV:
// version, actor, at, comment.
var approveScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local id = redis.call('XADD', KEYS[2], '*', 'kind', 'approve', 'actor', ARGV[2], 'at', ARGV[3],
  'from', '', 'to', ARGV[1], 'comment', ARGV[4], 'share', '0')
return {'ok', id}
`)

// rollbackScript re-activates the version active before the current one. KEYS: active,
// history, changes. ARGV: actor, at, comment, channel.
var rollbackScript = redis.NewScript(`
if redis.call('LLEN', KEYS[2]) < 2 then return {'noprevious'} end
local from = redis.call('RPOP', KEYS[2])
local to = redis.call('LINDEX', KEYS[2], -1)
redis.call('SET', KEYS[1], to)
local id = redis.call('XADD', KEYS[3], '*', 'kind', 'rollback', 'actor', ARGV[1], 'at', ARGV[2],
  'from', from, 'to', to, 'comment', ARGV[3], 'share', '0')
redis.call('PUBLISH', ARGV[4], 'rollback:' .. to)
return {'ok', from, to, id}
`)

// shadowScript sets or clears the shadow version. KEYS: shadow, changes, version hash.
// ARGV: version (empty clears), share, actor, at, comment, channel.
var shadowScript = redis.NewScript(`
if ARGV[1] ~= '' and redis.call('EXISTS', KEYS[3]) == 0 then return {'notfound'} end
local from = redis.call('HGET', KEYS[1], 'version') or ''
local id = redis.call('XADD', KEYS[2], '*', 'kind', 'shadow', 'actor', ARGV[3], 'at', ARGV[4],
  'from', from, 'to', ARGV[1], 'comment', ARGV[5], 'share', ARGV[2])
redis.call('DEL', KEYS[1])
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], 'version', ARGV[1], 'share', ARGV[2], 'epoch', id, 'since', ARGV[4])
end
redis.call('PUBLISH', ARGV[6], 'shadow:' .. ARGV[1])
return {'ok', from, id}
`)

// shadowAddScript adds counters and samples to the current shadow run, and drops them when
// the run has changed. KEYS: shadow, counters, samples. ARGV: epoch, ttl seconds, samples
// kept, number of counter fields n, then n field/increment pairs, then the samples.
var shadowAddScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[4])
for i = 0, n - 1 do
  redis.call('HINCRBY', KEYS[2], ARGV[5 + 2 * i], ARGV[6 + 2 * i])
end
for j = 5 + 2 * n, #ARGV do
  redis.call('LPUSH', KEYS[3], ARGV[j])
end
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 1
`)

// storedFiles is the JSON form of a bundle's files.
type storedFiles map[string][]byte

// PublishPolicy stores b unless its version exists. It returns the stored version and whether
// it was created: publishing the same version with the same digest again returns the stored
// metadata and false; with a different digest, ErrVersionExists. The change log records each
// new version, by b.Author at b.CreatedAt.
func (s *Redis) PublishPolicy(ctx context.Context, b Bundle) (PolicyVersion, bool, error) {
	b.CreatedAt = b.CreatedAt.UTC()
	meta, err := json.Marshal(b.PolicyVersion)
	if err != nil {
		return PolicyVersion{}, false, fmt.Errorf("encode policy %s: %w", b.Version, err)
	}
	files, err := json.Marshal(storedFiles(b.Files))
	if err != nil {
		return PolicyVersion{}, false, fmt.Errorf("encode policy %s files: %w", b.Version, err)
	}
	keys := []string{policyKey("v", b.Version), policyKey("versions"), policyKey("changes")}
	res, err := publishScript.Run(ctx, s.rdb, keys, b.Version, b.Digest, meta, files,
		b.CreatedAt.UnixMilli(), b.Author, policyTime(b.CreatedAt), b.Comment).Slice()
	if err != nil {
		return PolicyVersion{}, false, policyUnavailable("publish policy "+b.Version, err)
	}
	switch res[0] {
	case "ok":
		return b.PolicyVersion, true, nil
	case "exists":
		v, err := decodePolicyVersion(res[1])
		return v, false, err
	default:
		return PolicyVersion{}, false, fmt.Errorf("publish policy %s: %w", b.Version, ErrVersionExists)
	}
}

// PolicyVersions returns every published version, newest first.
func (s *Redis) PolicyVersions(ctx context.Context) ([]PolicyVersion, error) {
	names, err := s.rdb.ZRevRange(ctx, policyKey("versions"), 0, -1).Result()
	if err != nil {
		return nil, policyUnavailable("list policies", err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.HGet(ctx, policyKey("v", n), "meta")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, policyUnavailable("list policies", err)
	}
	out := make([]PolicyVersion, 0, len(names))
	for _, c := range cmds {
		v, err := decodePolicyVersion(c.Val())
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sortVersions(out)
	return out, nil
}

// Bundle returns a published version with its files, or ErrNotFound.
func (s *Redis) Bundle(ctx context.Context, version string) (Bundle, error) {
	vals, err := s.rdb.HMGet(ctx, policyKey("v", version), "meta", "files").Result()
	if err != nil {
		return Bundle{}, policyUnavailable("read policy "+version, err)
	}
	if vals[0] == nil {
		return Bundle{}, fmt.Errorf("policy %s: %w", version, ErrNotFound)
	}
	v, err := decodePolicyVersion(vals[0])
	if err != nil {
		return Bundle{}, err
	}
	var files storedFiles
	if s, ok := vals[1].(string); !ok || json.Unmarshal([]byte(s), &files) != nil {
		return Bundle{}, fmt.Errorf("policy %s files: %w", version, ErrCorrupt)
	}
	return Bundle{PolicyVersion: v, Files: files}, nil
}

// ActivePolicy returns the active version, or "" before the first activation.
func (s *Redis) ActivePolicy(ctx context.Context) (string, error) {
	v, err := s.rdb.Get(ctx, policyKey("active")).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", policyUnavailable("read active policy", err)
	}
	return v, nil
}

// ActivatePolicy makes c.To the active version, records the change by c.Actor at c.At with
// c.Comment, and notifies every replica. It returns the recorded change (with ID and From).
// Errors: ErrNotFound for an unpublished version, ErrAlreadyActive.
func (s *Redis) ActivatePolicy(ctx context.Context, c Change) (Change, error) {
	keys := []string{policyKey("active"), policyKey("history"), policyKey("changes"), policyKey("v", c.To)}
	res, err := activateScript.Run(ctx, s.rdb, keys, c.To, c.Actor, policyTime(c.At), c.Comment,
		PolicyChannel, activationHistory).Slice()
	if err != nil {
		return Change{}, policyUnavailable("activate policy "+c.To, err)
	}
	switch res[0] {
	case "ok":
		c.Kind, c.From, c.ID, c.At, c.ShadowShare = ChangeActivate, policyStr(res[1]), policyStr(res[2]), c.At.UTC(), 0
		return c, nil
	case "active":
		return Change{}, fmt.Errorf("activate policy %s: %w", c.To, ErrAlreadyActive)
	default:
		return Change{}, fmt.Errorf("activate policy %s: %w", c.To, ErrNotFound)
	}
}

// ApprovePolicy records c.Actor's approval of the published version c.To in the change log
// (ErrNotFound when it is not published). Who may approve is the caller's to check.
func (s *Redis) ApprovePolicy(ctx context.Context, c Change) (Change, error) {
	res, err := approveScript.Run(ctx, s.rdb, []string{policyKey("v", c.To), policyKey("changes")},
		c.To, c.Actor, policyTime(c.At), c.Comment).Slice()
	if err != nil {
		return Change{}, policyUnavailable("approve policy "+c.To, err)
	}
	if res[0] != "ok" {
		return Change{}, fmt.Errorf("approve policy %s: %w", c.To, ErrNotFound)
	}
	c.Kind, c.From, c.ID, c.At, c.ShadowShare = ChangeApprove, "", policyStr(res[1]), c.At.UTC(), 0
	return c, nil
}

// RollbackPolicy re-activates the version active before the current one, records the change
// by c.Actor at c.At with c.Comment, and notifies every replica. Repeated rollbacks walk back
// through the activations (up to 100). ErrNoPrevious when there is nothing to go back to.
func (s *Redis) RollbackPolicy(ctx context.Context, c Change) (Change, error) {
	keys := []string{policyKey("active"), policyKey("history"), policyKey("changes")}
	res, err := rollbackScript.Run(ctx, s.rdb, keys, c.Actor, policyTime(c.At), c.Comment, PolicyChannel).Slice()
	if err != nil {
		return Change{}, policyUnavailable("roll back policy", err)
	}
	if res[0] != "ok" {
		return Change{}, fmt.Errorf("roll back policy: %w", ErrNoPrevious)
	}
	c.Kind, c.From, c.To, c.ID, c.At, c.ShadowShare = ChangeRollback, policyStr(res[1]), policyStr(res[2]), policyStr(res[3]), c.At.UTC(), 0
	return c, nil
}

// SetShadowPolicy runs c.To in shadow on c.ShadowShare of the traffic (an empty c.To stops the
// shadow), records the change and notifies every replica. A new shadow run starts its
// counters from zero. ErrNotFound for an unpublished version.
func (s *Redis) SetShadowPolicy(ctx context.Context, c Change) (Change, error) {
	if c.To == "" {
		c.ShadowShare = 0
	}
	keys := []string{policyKey("shadow"), policyKey("changes"), policyKey("v", c.To)}
	res, err := shadowScript.Run(ctx, s.rdb, keys, c.To, policyFloat(c.ShadowShare), c.Actor,
		policyTime(c.At), c.Comment, PolicyChannel).Slice()
	if err != nil {
		return Change{}, policyUnavailable("set shadow policy", err)
	}
	if res[0] != "ok" {
		return Change{}, fmt.Errorf("shadow policy %s: %w", c.To, ErrNotFound)
	}
	c.Kind, c.From, c.ID, c.At = ChangeShadow, policyStr(res[1]), policyStr(res[2]), c.At.UTC()
	return c, nil
}

// ShadowPolicy returns the shadow configuration; the zero value when there is none.
func (s *Redis) ShadowPolicy(ctx context.Context) (ShadowConfig, error) {
	m, err := s.rdb.HGetAll(ctx, policyKey("shadow")).Result()
	if err != nil {
		return ShadowConfig{}, policyUnavailable("read shadow policy", err)
	}
	return decodeShadowConfig(m)
}

// PolicyChanges returns the newest limit changes of the change log, newest first (limit <= 0:
// 100).
func (s *Redis) PolicyChanges(ctx context.Context, limit int) ([]Change, error) {
	if limit <= 0 {
		limit = defaultChangeLimit
	}
	msgs, err := s.rdb.XRevRangeN(ctx, policyKey("changes"), "+", "-", int64(limit)).Result()
	if err != nil {
		return nil, policyUnavailable("read policy changes", err)
	}
	out := make([]Change, 0, len(msgs))
	for _, m := range msgs {
		c := Change{
			ID: m.ID, Kind: ChangeKind(policyStr(m.Values["kind"])), Actor: policyStr(m.Values["actor"]),
			From: policyStr(m.Values["from"]), To: policyStr(m.Values["to"]), Comment: policyStr(m.Values["comment"]),
		}
		var err error
		if c.At, err = time.Parse(time.RFC3339Nano, policyStr(m.Values["at"])); err != nil {
			return nil, fmt.Errorf("policy change %s time: %w", m.ID, ErrCorrupt)
		}
		if c.ShadowShare, err = strconv.ParseFloat(policyStr(m.Values["share"]), 64); err != nil {
			return nil, fmt.Errorf("policy change %s share: %w", m.ID, ErrCorrupt)
		}
		out = append(out, c)
	}
	return out, nil
}

// AddShadowResults adds counts and samples to the shadow run epoch. It reports false, and
// changes nothing, when epoch is no longer the current run (the shadow was changed or
// stopped). The store keeps the newest ShadowSamplesKept samples.
func (s *Redis) AddShadowResults(ctx context.Context, epoch string, counts ShadowCounts, samples []ShadowSample) (bool, error) {
	fields := shadowFields(counts)
	args := make([]any, 0, 4+2*len(fields)+len(samples))
	args = append(args, epoch, int64(shadowTTL/time.Second), ShadowSamplesKept, len(fields))
	for _, f := range fields {
		args = append(args, f.name, f.n)
	}
	for _, sm := range samples {
		b, err := json.Marshal(sm)
		if err != nil {
			return false, fmt.Errorf("encode shadow sample: %w", err)
		}
		args = append(args, b)
	}
	keys := []string{policyKey("shadow"), policyKey("shadow", epoch), policyKey("shadow", epoch, "samples")}
	n, err := shadowAddScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return false, policyUnavailable("add shadow results", err)
	}
	return n == 1, nil
}

// ShadowReport returns the current shadow run with its counts and samples; a zero Config
// when there is no shadow.
func (s *Redis) ShadowReport(ctx context.Context) (ShadowReport, error) {
	cfg, err := s.ShadowPolicy(ctx)
	if err != nil || cfg.Epoch == "" {
		return ShadowReport{Config: cfg}, err
	}
	pipe := s.rdb.Pipeline()
	countsCmd := pipe.HGetAll(ctx, policyKey("shadow", cfg.Epoch))
	samplesCmd := pipe.LRange(ctx, policyKey("shadow", cfg.Epoch, "samples"), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return ShadowReport{}, policyUnavailable("read shadow report", err)
	}
	rep := ShadowReport{Config: cfg}
	if rep.Counts, err = parseShadowFields(countsCmd.Val()); err != nil {
		return ShadowReport{}, err
	}
	for _, raw := range samplesCmd.Val() {
		var sm ShadowSample
		if err := json.Unmarshal([]byte(raw), &sm); err != nil {
			return ShadowReport{}, fmt.Errorf("shadow sample: %w", ErrCorrupt)
		}
		rep.Samples = append(rep.Samples, sm)
	}
	return rep, nil
}

// WatchPolicy returns a channel that receives a value soon after every activation, rollback
// or shadow change made through any store on the same Redis. Notifications coalesce: one
// pending value stands for any number of changes, and the receiver re-reads the
// configuration. Messages published while the connection is down are lost, so callers also
// poll. The channel is closed when ctx is done.
func (s *Redis) WatchPolicy(ctx context.Context) (<-chan struct{}, error) {
	ps := s.rdb.Subscribe(ctx, PolicyChannel)
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return nil, policyUnavailable("subscribe to policy changes", err)
	}
	out := make(chan struct{}, 1)
	msgs := ps.Channel()
	go func() {
		defer close(out)
		defer ps.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-msgs:
				if !ok {
					return
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, nil
}

// shadowField is one counter of a shadow run as a Redis hash field.
type shadowField struct {
	name string
	n    int64
}

// shadowFields flattens counts to hash fields: evaluated, different, errors,
// a:<active>:<shadow>, r+:<code> and r-:<code>.
func shadowFields(c ShadowCounts) []shadowField {
	fs := make([]shadowField, 0, 3+len(c.Actions)+len(c.ReasonsAdded)+len(c.ReasonsRemoved))
	for _, f := range []shadowField{{"evaluated", c.Evaluated}, {"different", c.Different}, {"errors", c.Errors}} {
		if f.n != 0 {
			fs = append(fs, f)
		}
	}
	for p, n := range c.Actions {
		fs = append(fs, shadowField{fmt.Sprintf("a:%d:%d", p.Active, p.Shadow), n})
	}
	for code, n := range c.ReasonsAdded {
		fs = append(fs, shadowField{"r+:" + code, n})
	}
	for code, n := range c.ReasonsRemoved {
		fs = append(fs, shadowField{"r-:" + code, n})
	}
	return fs
}

// parseShadowFields is the inverse of shadowFields.
func parseShadowFields(m map[string]string) (ShadowCounts, error) {
	var c ShadowCounts
	for k, v := range m {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return ShadowCounts{}, fmt.Errorf("shadow counter %s: %w", k, ErrCorrupt)
		}
		switch {
		case k == "evaluated":
			c.Evaluated = n
		case k == "different":
			c.Different = n
		case k == "errors":
			c.Errors = n
		case strings.HasPrefix(k, "a:"):
			var a, b uint8
			if _, err := fmt.Sscanf(k, "a:%d:%d", &a, &b); err != nil {
				return ShadowCounts{}, fmt.Errorf("shadow counter %s: %w", k, ErrCorrupt)
			}
			c.Add(ShadowCounts{Actions: map[ActionPair]int64{{decision.Action(a), decision.Action(b)}: n}})
		case strings.HasPrefix(k, "r+:"):
			c.ReasonsAdded = addCounts(c.ReasonsAdded, map[string]int64{k[3:]: n})
		case strings.HasPrefix(k, "r-:"):
			c.ReasonsRemoved = addCounts(c.ReasonsRemoved, map[string]int64{k[3:]: n})
		}
	}
	return c, nil
}

func decodeShadowConfig(m map[string]string) (ShadowConfig, error) {
	if len(m) == 0 {
		return ShadowConfig{}, nil
	}
	share, err := strconv.ParseFloat(m["share"], 64)
	if err != nil {
		return ShadowConfig{}, fmt.Errorf("shadow share: %w", ErrCorrupt)
	}
	since, err := time.Parse(time.RFC3339Nano, m["since"])
	if err != nil {
		return ShadowConfig{}, fmt.Errorf("shadow since: %w", ErrCorrupt)
	}
	return ShadowConfig{Version: m["version"], Share: share, Epoch: m["epoch"], Since: since}, nil
}

func decodePolicyVersion(raw any) (PolicyVersion, error) {
	s, ok := raw.(string)
	var v PolicyVersion
	if !ok || json.Unmarshal([]byte(s), &v) != nil {
		return PolicyVersion{}, fmt.Errorf("policy metadata: %w", ErrCorrupt)
	}
	return v, nil
}

// policyUnavailable wraps a Redis error as ErrUnavailable.
func policyUnavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

func policyStr(v any) string {
	s, _ := v.(string)
	return s
}

func policyTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func policyFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
