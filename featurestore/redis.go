package featurestore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/decision"
)

// Redis is the feature store on Redis: a single node or a Redis Cluster, through a go-redis
// UniversalClient. Load and Commit are one round trip each (Load a MULTI/EXEC of plain reads, Commit one Lua
// script), and every script
// touches one bucket's keys, so one cluster slot. It is safe for concurrent use.
type Redis struct {
	client redis.UniversalClient
	opts   options
	shards *shardMap
	// Script arguments that never change, boxed once.
	retentionArg, keepArg, recentTTLArg, maxMembersArg, loadLimitArg any
	// resp2 is set when the client speaks RESP2 (Dial's default): a Load then reads its
	// arrays straight into string slices, without boxing each element in an interface.
	resp2 bool
}

// NewRedis returns a store on client, which it owns from then on: Close closes it. Options:
// WithRetention (WithClock does not apply: Redis expires keys itself).
// Attach instrumentation (redisotel) to the client before or after; the store does not wrap
// calls.
func NewRedis(client redis.UniversalClient, opts ...Option) *Redis {
	o := newOptions(opts)
	protocol := 0
	switch c := client.(type) {
	case *redis.Client:
		protocol = c.Options().Protocol
	case *redis.ClusterClient:
		protocol = c.Options().Protocol
	}
	return &Redis{
		client: client, opts: o, shards: newShardMap(client),
		retentionArg: durMS(o.retention), keepArg: durMS(keepWindow),
		recentTTLArg: durMS(recentTTL), maxMembersArg: maxMembers, loadLimitArg: maxMembers + 1,
		resp2: protocol == 2,
	}
}

// Client timeouts of Dial, unless the URL sets them.
const (
	dialTimeout  = time.Second
	readTimeout  = 500 * time.Millisecond
	writeTimeout = 500 * time.Millisecond
	poolTimeout  = time.Second
	// clusterReloadInterval is how often a cluster client refreshes its slot map (go-redis's
	// default is 60 s). A failed master gives no MOVED reply, so this bounds how long its
	// slots stay unreachable after a replica was promoted.
	clusterReloadInterval = time.Second
)

// Dial returns a client for rawURL:
//
//   - "redis://[user:pass@]host:port[/db]" or "rediss://..." (TLS): a single node, with the
//     query options of redis.ParseURL;
//   - "redis+cluster://[user:pass@]h1:p1,h2:p2" or "rediss+cluster://...", or a plain list
//     "h1:p1,h2:p2": a Redis Cluster through any of the seed nodes;
//   - a plain "host:port": a single node.
//
// The client leaves ContextTimeoutEnabled off: a caller's deadline bounds the wait for a pooled
// connection, but never cuts a command on the wire, since a connection whose reply was cut off
// is closed and dialled again, and under load those reconnections feed the overload they come
// from (the server stops waiting for a slow call at its store budget and lets the reply land;
// see server.detached). Every command is bounded by the client's timeouts instead, which are
// tight unless the URL sets them: dial 1s, read and write 500ms, pool wait 1s; and a
// pool of 64 connections per node with 8 kept idle (see poolSize); and RESP2 (a redis:// URL
// may ask for protocol=3). Dial does not connect; use Ping.
func Dial(rawURL string) (redis.UniversalClient, error) {
	switch {
	case rawURL == "":
		return nil, errors.New("dial redis: empty address")
	case strings.HasPrefix(rawURL, "redis+cluster://"), strings.HasPrefix(rawURL, "rediss+cluster://"):
		opt, err := parseClusterURL(rawURL)
		if err != nil {
			return nil, err
		}
		return redis.NewClusterClient(opt), nil
	case strings.Contains(rawURL, "://"):
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("dial redis: %w", err)
		}
		setTimeouts(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout)
		setPool(&opt.PoolSize, &opt.MinIdleConns)
		setProtocol(&opt.Protocol)
		return redis.NewClient(opt), nil
	case strings.Contains(rawURL, ","):
		addrs, err := splitAddrs(rawURL)
		if err != nil {
			return nil, err
		}
		opt := &redis.ClusterOptions{Addrs: addrs, ClusterStateReloadInterval: clusterReloadInterval}
		setTimeouts(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout)
		setPool(&opt.PoolSize, &opt.MinIdleConns)
		setProtocol(&opt.Protocol)
		return redis.NewClusterClient(opt), nil
	default:
		if _, _, err := net.SplitHostPort(rawURL); err != nil {
			return nil, fmt.Errorf("dial redis: address %q: %w", rawURL, err)
		}
		opt := &redis.Options{Addr: rawURL}
		setTimeouts(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout)
		setPool(&opt.PoolSize, &opt.MinIdleConns)
		setProtocol(&opt.Protocol)
		return redis.NewClient(opt), nil
	}
}

// Pool sizes of Dial, per node, unless the URL sets them. go-redis's default (10 per CPU: 20
// on a 2-core host) is smaller than the calls a busy server has in flight: calls then wait for
// a connection until their store budget is spent and answer degraded while Redis is healthy,
// and each deadline cut mid-command discards a connection, so the reconnects add load. A pool
// of 64 with 8 kept warm absorbs the bursts of an open-loop 2,000/s on two cores.
const (
	poolSize     = 64
	minIdleConns = 8
)

func setPool(size, minIdle *int) {
	if *size == 0 {
		*size = poolSize
	}
	if *minIdle == 0 {
		*minIdle = minIdleConns
	}
}

// setProtocol speaks RESP2 unless the URL asks for another protocol. The store needs nothing
// of RESP3, and go-redis checks every RESP3 connection for push notifications before each
// reply: 3% of the server's CPU under load.
func setProtocol(p *int) {
	if *p == 0 {
		*p = 2
	}
}

func setTimeouts(dial, read, write, pool *time.Duration) {
	for _, d := range []struct {
		p *time.Duration
		v time.Duration
	}{{dial, dialTimeout}, {read, readTimeout}, {write, writeTimeout}, {pool, poolTimeout}} {
		if *d.p == 0 {
			*d.p = d.v
		}
	}
}

// parseClusterURL parses "redis+cluster://[user:pass@]h1:p1,h2:p2" (rediss+ for TLS).
func parseClusterURL(rawURL string) (*redis.ClusterOptions, error) {
	scheme, rest, _ := strings.Cut(rawURL, "://")
	opt := &redis.ClusterOptions{ClusterStateReloadInterval: clusterReloadInterval}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		user, pass, hasPass := strings.Cut(rest[:i], ":")
		var err error
		if opt.Username, err = url.PathUnescape(user); err != nil {
			return nil, fmt.Errorf("dial redis: cluster URL user: %w", err)
		}
		if hasPass {
			if opt.Password, err = url.PathUnescape(pass); err != nil {
				return nil, fmt.Errorf("dial redis: cluster URL password: %w", err)
			}
		}
		rest = rest[i+1:]
	}
	if strings.ContainsAny(rest, "/?#") {
		return nil, errors.New("dial redis: a cluster URL takes no database, path or options")
	}
	addrs, err := splitAddrs(rest)
	if err != nil {
		return nil, err
	}
	opt.Addrs = addrs
	setPool(&opt.PoolSize, &opt.MinIdleConns)
	setProtocol(&opt.Protocol)
	if scheme == "rediss+cluster" {
		opt.TLSConfig = newTLSConfig(addrs[0])
	}
	setTimeouts(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout)
	return opt, nil
}

func newTLSConfig(addr string) *tls.Config {
	host, _, _ := net.SplitHostPort(addr)
	return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
}

func splitAddrs(list string) ([]string, error) {
	var addrs []string
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("dial redis: cluster address %q: %w", a, err)
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return nil, errors.New("dial redis: no cluster address")
	}
	return addrs, nil
}

// storeErr wraps an error of the client for op on key: a wrong key type is ErrCorrupt, any
// connectivity failure, timeout, cancellation or server-side unavailability is ErrUnavailable,
// and a wait in vain for a pooled connection is ErrBusy too.
func storeErr(op, key string, err error) error {
	var rerr redis.Error
	switch {
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return fmt.Errorf("%s %s: %w: %w", op, key, ErrCorrupt, err)
	case errors.Is(err, redis.ErrPoolTimeout):
		return fmt.Errorf("%s %s: %w: %w: %w", op, key, ErrUnavailable, ErrBusy, err)
	case errors.As(err, &rerr) && !unavailableReply(err):
		return fmt.Errorf("%s %s: %w", op, key, err)
	default:
		return fmt.Errorf("%s %s: %w: %w", op, key, ErrUnavailable, err)
	}
}

// unavailableReply reports server replies that mean "not now": loading, failover, read-only
// replica, out of memory, busy script. EXECABORT is one of them: a MULTI/EXEC of this package
// is discarded only when the server refused a queued command for such a reason (a restarted
// Redis answers LOADING to every read while it loads its data).
func unavailableReply(err error) bool {
	for _, p := range []string{"LOADING", "EXECABORT", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "OOM", "BUSY", "NOREPLICAS", "MOVED", "ASK"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// runStatus runs a script whose reply starts with a status (see scripts.go) and returns the
// reply and its status; errors name op and key.
func (r *Redis) runStatus(ctx context.Context, s *redis.Script, op, key string, keys []string, args ...any) ([]any, int64, error) {
	v, err := s.Run(ctx, r.client, keys, args...).Result()
	if err != nil {
		return nil, 0, storeErr(op, key, err)
	}
	return reply(op, key, v)
}

// reply checks a script reply: an array whose first element is a status.
func reply(op, key string, v any) ([]any, int64, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return nil, 0, fmt.Errorf("%s %s: unexpected reply %T", op, key, v)
	}
	status, ok := arr[0].(int64)
	if !ok {
		return nil, 0, fmt.Errorf("%s %s: unexpected status %T", op, key, arr[0])
	}
	if status == 3 {
		what, _ := elem(arr, 1).(string)
		return nil, 0, fmt.Errorf("%s: %w", op, corrupt(key, "%s", what))
	}
	return arr, status, nil
}

func elem(arr []any, i int) any {
	if i < len(arr) {
		return arr[i]
	}
	return nil
}

// arrayReply returns the strings of a Load's array read (queueLoad).
func arrayReply(key string, c redis.Cmder) ([]string, error) {
	if c, ok := c.(*redis.StringSliceCmd); ok {
		return c.Val(), nil
	}
	return replyStrings(key, c.(*redis.Cmd).Val())
}

// strings of a reply element that must be an array of strings.
func replyStrings(key string, v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			switch e := e.(type) {
			case string:
				out = append(out, e)
			case []any:
				// RESP3 WITHSCORES: a [member, score] pair per member.
				if len(e) != 2 {
					return nil, corrupt(key, "reply pair of %d elements", len(e))
				}
				m, ok := e[0].(string)
				sc, err := scoreString(e[1])
				if !ok || err != nil {
					return nil, corrupt(key, "reply pair of %T, %T", e[0], e[1])
				}
				out = append(out, m, sc)
			default:
				return nil, corrupt(key, "reply element of type %T", e)
			}
		}
		return out, nil
	case map[any]any:
		// RESP3 HGETALL: a map.
		out := make([]string, 0, 2*len(v))
		for f, val := range v {
			fs, ok1 := f.(string)
			vs, ok2 := val.(string)
			if !ok1 || !ok2 {
				return nil, corrupt(key, "reply map entry of %T, %T", f, val)
			}
			out = append(out, fs, vs)
		}
		return out, nil
	}
	return nil, corrupt(key, "reply of type %T", v)
}

// scoreString formats a RESP3 score (a double) as RESP2 does for the integral scores the
// store writes.
func scoreString(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	}
	return "", fmt.Errorf("score of type %T", v)
}

// replayed returns the record of a status-1 reply.
func replayed(op, key string, arr []any) ([]byte, error) {
	rec, ok := elem(arr, 1).(string)
	if !ok || rec == "" {
		return nil, fmt.Errorf("%s: %w", op, corrupt(key, "event decided but its record is missing"))
	}
	if len(rec) > maxRecordBytes {
		return nil, fmt.Errorf("%s: %w", op, corrupt(key, "record is %d bytes", len(rec)))
	}
	return []byte(rec), nil
}

// Load implements the store's Load: the stored record when eventID was decided before, else
// the customer's state at now and its version. One round trip.
func (r *Redis) Load(ctx context.Context, customerID, eventID string, now time.Time) (Loaded, error) {
	if err := checkID("customer id", customerID, true); err != nil {
		return Loaded{}, err
	}
	if err := checkID("event id", eventID, true); err != nil {
		return Loaded{}, err
	}
	k := keysOf(customerID)
	return r.load(ctx, "load", &k, key(keyEvent, k.bucket, customerID, eventID), true, now, nil)
}

// LoadNarrow is Load for a decision that reads only what n says of the customer's ledger and
// recent decisions: the state comes narrowed (decision.Narrow), without building the rest.
func (r *Redis) LoadNarrow(ctx context.Context, customerID, eventID string, now time.Time, n Narrowing) (Loaded, error) {
	if err := checkID("customer id", customerID, true); err != nil {
		return Loaded{}, err
	}
	if err := checkID("event id", eventID, true); err != nil {
		return Loaded{}, err
	}
	k := keysOf(customerID)
	return r.load(ctx, "load", &k, key(keyEvent, k.bucket, customerID, eventID), true, now, &n)
}

// State implements the store's State: the customer's live state at now. One round trip.
func (r *Redis) State(ctx context.Context, customerID string, now time.Time) (decision.State, error) {
	if err := checkID("customer id", customerID, true); err != nil {
		return decision.State{}, err
	}
	k := keysOf(customerID)
	l, err := r.load(ctx, "state", &k, key(keyEvent, k.bucket, customerID, ""), false, now, nil)
	return l.State, err
}

// noVersion is the version of a state to which nothing was ever added (no version key): a
// commit on it needs no re-check while there is still none. Versions are decision ids
// otherwise, so it is never one.
const noVersion = "0"

// loadCmds are the reads of a Load, in the order queueLoad queues them: the event's decision
// id (nil unless checked), features, messages, ledger, stops, failing, recent, version, and
// the state marker (nil without WithStateMarker).
type loadCmds [9]redis.Cmder

// queueLoad queues a Load's reads on p.
func (r *Redis) queueLoad(ctx context.Context, p redis.Pipeliner, k *customerKeys, eventKey string, checkEvent bool, now time.Time) loadCmds {
	since := strconv.FormatInt(ms(now.Add(-loadWindow)), 10)
	var cmds loadCmds
	if checkEvent {
		cmds[0] = p.Do(ctx, "GET", eventKey)
	}
	// An array read: on RESP2 straight into a []string; RESP3 shapes some replies as maps
	// and pairs, which only the generic reply reads.
	array := func(args ...any) redis.Cmder {
		if !r.resp2 {
			return p.Do(ctx, args...)
		}
		c := redis.NewStringSliceCmd(ctx, args...)
		_ = p.Process(ctx, c) // queued: the pipeline's Exec reports errors
		return c
	}
	cmds[1] = array("HGETALL", k.features)
	// One member more than the decoders accept, so that too many is seen.
	cmds[2] = array("ZRANGEBYSCORE", k.messages, since, "+inf", "WITHSCORES", "LIMIT", 0, r.loadLimitArg)
	cmds[3] = array("ZRANGEBYSCORE", k.ledger, since, "+inf", "WITHSCORES", "LIMIT", 0, r.loadLimitArg)
	cmds[4] = array("HGETALL", k.stops)
	cmds[5] = array("HGETALL", k.failing)
	cmds[6] = array("LRANGE", k.recent, 0, recentLen-1)
	cmds[7] = p.Do(ctx, "GET", k.version)
	if r.opts.marker {
		cmds[8] = p.Do(ctx, "EXISTS", k.kept)
	}
	return cmds
}

// load reads a customer's state in one MULTI/EXEC of plain reads (a consistent snapshot),
// and first the event's decision id when checkEvent. Plain commands cost Redis half of what
// the same reads cost in a Lua script, which copies every reply into Lua and back. Only an
// event decided before takes a second round trip, to read its record.
func (r *Redis) load(ctx context.Context, op string, k *customerKeys, eventKey string, checkEvent bool, now time.Time, n *Narrowing) (Loaded, error) {
	var cmds loadCmds
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		cmds = r.queueLoad(ctx, p, k, eventKey, checkEvent, now)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Loaded{}, storeErr(op, k.features, err)
	}
	return r.loaded(ctx, op, k, eventKey, &cmds, now, n)
}

// loaded reads the replies of a Load's reads (queueLoad): the record of an event decided
// before, which takes another round trip, else the decoded state.
func (r *Redis) loaded(ctx context.Context, op string, k *customerKeys, eventKey string, cmds *loadCmds, now time.Time, n *Narrowing) (Loaded, error) {
	for _, c := range cmds {
		if c != nil && c.Err() != nil && !errors.Is(c.Err(), redis.Nil) {
			return Loaded{}, storeErr(op, c.Args()[1].(string), c.Err())
		}
	}
	if cmds[0] != nil {
		if id, err := cmds[0].(*redis.Cmd).Text(); err == nil {
			return r.replay(ctx, op, k, eventKey, id)
		}
	}
	var (
		raw rawState
		err error
	)
	for i, dst := range raw.lists(k) {
		if *dst.p, err = arrayReply(dst.key, cmds[i+1]); err != nil {
			return Loaded{}, fmt.Errorf("%s: %w", op, err)
		}
	}
	if len(raw.features) > 2*maxFeatures {
		return Loaded{}, fmt.Errorf("%s: %w", op, corrupt(k.features, "too many fields"))
	}
	version, err := cmds[7].(*redis.Cmd).Text()
	switch {
	case errors.Is(err, redis.Nil):
		version = noVersion
	case err != nil:
		return Loaded{}, fmt.Errorf("%s: %w", op, corrupt(k.version, "%v", err))
	}
	var st decision.State
	if n != nil {
		st, err = raw.decodeNarrow(k, now, *n)
	} else {
		st, err = raw.decode(k, now)
	}
	if err != nil {
		return Loaded{}, fmt.Errorf("%s: %w", op, err)
	}
	unverified := false
	if c := cmds[8]; c != nil {
		n, _ := c.(*redis.Cmd).Int64()
		unverified = n == 0
	}
	return Loaded{State: st, Version: version, Unverified: unverified}, nil
}

// replay reads the record of an event that was decided before, whose decision id is id.
func (r *Redis) replay(ctx context.Context, op string, k *customerKeys, eventKey, id string) (Loaded, error) {
	if _, err := bucketOfDecisionID(id); err != nil {
		return Loaded{}, fmt.Errorf("%s: %w", op, corrupt(eventKey, "decision id %q", id))
	}
	rec, err := r.client.Get(ctx, key(keyDecision, k.bucket, "", id)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		// Archived and dropped (WithAuditDropRecords): the caller reads the archive.
		return Loaded{ArchivedID: id}, nil
	case err != nil:
		return Loaded{}, storeErr(op, eventKey, err)
	case len(rec) > maxRecordBytes:
		return Loaded{}, fmt.Errorf("%s: %w", op, corrupt(eventKey, "record is %d bytes", len(rec)))
	}
	return Loaded{Record: []byte(rec)}, nil
}

// Commit implements the store's Commit: replay, checks, then every effect, atomically, in one
// round trip.
func (r *Redis) Commit(ctx context.Context, c *Commit) (Committed, error) {
	event, keys, args, err := r.commitArgs(c)
	if err != nil {
		return Committed{}, err
	}
	arr, status, err := r.runStatus(ctx, commitScript, "commit", event, keys, args...)
	if err != nil {
		return Committed{}, err
	}
	return committed(event, arr, status)
}

// commitArgs returns the keys and arguments of commitScript for c, and c's event key.
func (r *Redis) commitArgs(c *Commit) (event string, keys []string, args []any, err error) {
	a, err := prepareCommit(c)
	if err != nil {
		return "", nil, nil, err
	}
	k := &a.keys
	e := &c.Effects
	keys = []string{a.event, a.record, k.messages, k.ledger, k.stops, k.features, k.recent, key(keyAudit, k.bucket, "", ""), k.version}
	args = make([]any, 0, 20+5*len(e.CapChecks)+10*len(e.LedgerChecks)+4*len(e.StopChecks)+2*len(a.ledger)+
		2*len(a.stops)+3*len(a.features))
	var msgScore int64
	if e.Message != nil {
		msgScore = ms(e.Message.At)
	}
	args = append(args, c.Record, c.DecisionID, ms(c.Now), r.retentionArg, r.retentionArg,
		a.summary, a.message, msgScore, ms(c.Now.Add(-keepWindow)), r.keepArg, r.recentTTLArg,
		key(keyDecisionPrefix, k.bucket, "", ""), r.maxMembersArg, c.Version)
	args = append(args, len(e.CapChecks))
	for i := range e.CapChecks {
		cc := &e.CapChecks[i]
		args = append(args, cc.Name, int64(cc.Channel), int64(cc.Purposes), ms(cc.Since), cc.Limit)
	}
	args = append(args, len(e.LedgerChecks))
	for i := range e.LedgerChecks {
		lc := &e.LedgerChecks[i]
		anyAmount := "0"
		if lc.AnyAmount {
			anyAmount = "1"
		}
		args = append(args, lc.Name, int64(lc.Kind), lc.CardRef, lc.MerchantID, lc.AmountMinor, anyAmount,
			lc.Currency, int64(lc.Initiator), ms(lc.Since), lc.Limit)
	}
	args = append(args, len(e.StopChecks))
	for i := range e.StopChecks {
		sc := &e.StopChecks[i]
		args = append(args, sc.Name, sc.CardRef, sc.MerchantID, ms(sc.At))
	}
	args = append(args, len(a.ledger))
	for i, m := range a.ledger {
		args = append(args, m, ms(e.Ledger[i].At))
	}
	args = append(args, len(a.stops))
	for _, fv := range a.stops {
		args = append(args, fv[0], fv[1])
	}
	args = append(args, len(a.features))
	for i, fv := range a.features {
		del := "0"
		if a.delete[i] {
			del = "1"
		}
		args = append(args, fv[0], fv[1], del)
	}
	return a.event, keys, args, nil
}

// committed reads commitScript's reply.
func committed(event string, arr []any, status int64) (Committed, error) {
	switch status {
	case 0:
		return Committed{}, nil
	case 1:
		if id, _ := elem(arr, 2).(string); id != "" && elem(arr, 1) == nil {
			return Committed{ArchivedID: id}, nil
		}
		rec, err := replayed("commit", event, arr)
		return Committed{Record: rec}, err
	case 2:
		name, _ := elem(arr, 1).(string)
		return Committed{Conflict: name}, nil
	}
	return Committed{}, fmt.Errorf("commit %s: unexpected status %d", event, status)
}

// GetDecision implements the store's GetDecision: the record and the outcomes, oldest first.
// ErrNotFound when there is no such decision or the id is malformed.
func (r *Redis) GetDecision(ctx context.Context, decisionID string) ([]byte, []StoredOutcome, error) {
	b, err := bucketOfDecisionID(decisionID)
	if err != nil {
		return nil, nil, fmt.Errorf("get decision: %w", err)
	}
	rk, ok := key(keyDecision, b, "", decisionID), key(keyOutcomes, b, "", decisionID)
	v, err := getDecisionScript.Run(ctx, r.client, []string{rk, ok}).Result()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	if err != nil {
		return nil, nil, storeErr("get decision", rk, err)
	}
	arr, _ := v.([]any)
	if len(arr) == 0 || arr[0] == nil {
		return nil, nil, fmt.Errorf("get decision %s: %w", rk, ErrNotFound)
	}
	rec, isStr := arr[0].(string)
	if !isStr || len(rec) > maxRecordBytes {
		return nil, nil, fmt.Errorf("get decision: %w", corrupt(rk, "record of %d bytes", len(rec)))
	}
	flat, err := replyStrings(ok, elem(arr, 1))
	if err != nil {
		return nil, nil, fmt.Errorf("get decision: %w", err)
	}
	outs, err := decodeOutcomes(ok, flat)
	if err != nil {
		return nil, nil, fmt.Errorf("get decision: %w", err)
	}
	return []byte(rec), outs, nil
}

// RecordOutcome implements the store's RecordOutcome: atomic and idempotent per decision and
// outcome; a repeat applies nothing and returns duplicate true. ErrNotFound when the decision
// does not exist.
func (r *Redis) RecordOutcome(ctx context.Context, o *OutcomeCommit) (bool, error) {
	a, err := prepareOutcome(o)
	if err != nil {
		return false, err
	}
	k := &a.keys
	keys := []string{a.record, a.outcomes, k.messages, k.failing, k.ledger, auditStreamKey(int(k.bucket)), k.features}
	_, status, err := r.runStatus(ctx, outcomeScript, "record outcome", a.outcomes, keys, a.field, a.value,
		r.retentionArg, ms(o.Now), a.release, a.failCh, a.failTill, a.resetRef, o.DecisionID, r.retentionArg, boolArg(o.Archived),
		boolArg(o.Effects.OptOut))
	if err != nil {
		return false, err
	}
	switch status {
	case 0:
		return false, nil
	case 1:
		return true, nil
	case 2:
		return false, fmt.Errorf("record outcome %s: %w", a.record, ErrNotFound)
	}
	return false, fmt.Errorf("record outcome %s: unexpected status %d", a.outcomes, status)
}

// PutFeatures implements the store's PutFeatures: merge features into the customer's (a nil
// value deletes), then expire the hash after ttl when ttl > 0, else remove any expiry (an
// opt-out written without a TTL must not lapse). Atomic (MULTI/EXEC).
func (r *Redis) PutFeatures(ctx context.Context, customerID string, features map[string]any, ttl time.Duration) error {
	enc, err := encodeFeatures(&FeatureRecord{CustomerID: customerID, Features: features, TTL: ttl})
	if err != nil {
		return fmt.Errorf("put features: %w", err)
	}
	_, err = r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		queueFeatures(ctx, p, &enc, ttl)
		return nil
	})
	if err != nil {
		return storeErr("put features", enc.key, err)
	}
	return nil
}

// batchChunk is how many customers PutFeaturesBatch sends per pipeline, and batchWorkers how
// many pipelines it keeps in flight, so encoding the next chunk overlaps Redis applying the last.
const (
	batchChunk   = 1000
	batchWorkers = 4
)

// PutFeaturesBatch implements the store's PutFeaturesBatch: PutFeatures for many customers,
// pipelined (not atomic across customers). Invalid items are refused before anything is
// written. On an error, some chunks may have been written.
func (r *Redis) PutFeaturesBatch(ctx context.Context, items []FeatureRecord) error {
	for i := range items {
		if err := checkFeatures(&items[i]); err != nil {
			return fmt.Errorf("put features: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
	)
	chunks := make(chan int)
	var wg sync.WaitGroup
	for range min(batchWorkers, (len(items)+batchChunk-1)/batchChunk) {
		wg.Go(func() {
			for start := range chunks {
				if err := r.putChunk(ctx, items[start:min(start+batchChunk, len(items))]); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
				}
			}
		})
	}
feed:
	for start := 0; start < len(items); start += batchChunk {
		select {
		case chunks <- start:
		case <-ctx.Done():
			break feed
		}
	}
	close(chunks)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return storeErr("put features batch", "", err)
	}
	return nil
}

func (r *Redis) putChunk(ctx context.Context, items []FeatureRecord) error {
	if err := ctx.Err(); err != nil {
		return storeErr("put features batch", "", err)
	}
	p := r.client.Pipeline()
	for i := range items {
		enc, err := encodeFeatures(&items[i])
		if err != nil {
			return fmt.Errorf("put features: %w", err)
		}
		queueFeatures(ctx, p, &enc, items[i].TTL)
	}
	if _, err := p.Exec(ctx); err != nil {
		return storeErr("put features batch", items[0].CustomerID, err)
	}
	return nil
}

func queueFeatures(ctx context.Context, p redis.Pipeliner, e *encodedFeatures, ttl time.Duration) {
	if len(e.set) > 0 {
		args := make([]any, 0, 2*len(e.set))
		for _, fv := range e.set {
			args = append(args, fv[0], fv[1])
		}
		p.HSet(ctx, e.key, args...)
	}
	if len(e.del) > 0 {
		p.HDel(ctx, e.key, e.del...)
	}
	if ttl > 0 {
		p.PExpire(ctx, e.key, ttl)
	} else {
		p.Persist(ctx, e.key)
	}
}

// auditPage is how many audit entries ScanAudit reads per round trip.
const auditPage = 500

// ScanAudit implements the store's ScanAudit: fn sees every audit entry, bucket by bucket,
// oldest first within a bucket. An error of fn stops the scan and is returned as is.
func (r *Redis) ScanAudit(ctx context.Context, fn func(decisionID string, record []byte) error) error {
	for b := range 256 {
		ak := key(keyAudit, bucket(b), "", "")
		start := "-"
		for {
			msgs, err := r.client.XRangeN(ctx, ak, start, "+", auditPage).Result()
			if err != nil {
				return storeErr("scan audit", ak, err)
			}
			entries := make([]AuditEntry, 0, len(msgs))
			for _, m := range msgs {
				e, err := auditEntryOf(m)
				if err != nil {
					return fmt.Errorf("scan audit: %w", err)
				}
				entries = append(entries, e)
			}
			// Entries whose record expired are skipped, as they are gone from the trail.
			entries, err = fetchRecords(ctx, r.client, entries, &AuditStats{})
			if err != nil {
				return fmt.Errorf("scan audit: %w", err)
			}
			for _, e := range entries {
				if err := fn(e.DecisionID, e.Record); err != nil {
					return err
				}
			}
			if len(msgs) < auditPage {
				break
			}
			start = "(" + msgs[len(msgs)-1].ID
		}
	}
	return nil
}

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return storeErr("ping", "", err)
	}
	return nil
}

// Close closes the client.
func (r *Redis) Close() error {
	return r.client.Close()
}

// boolArg is a script argument for b: "1" or "0".
func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
