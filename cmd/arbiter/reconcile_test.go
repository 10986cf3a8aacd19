package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// TestAuditExportCommand runs "arbiter audit export" twice over audit entries in Redis: the
// first run writes every record once, the second (after more decisions and a copy of an old
// entry, as a re-delivery) only the new ones.
func TestAuditExportCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	addr := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := t.Context()
	add := func(id string) {
		b, err := proto.Marshal(&arbiterv1.DecisionRecord{DecisionId: id, EventId: "ev-" + id})
		if err != nil {
			t.Fatal(err)
		}
		stream := fmt.Sprintf("{b:%02x}:audit", len(id)*7%256)
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"r", b, "d", id}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	export := func() string {
		var out, errOut bytes.Buffer
		err := run(ctx, []string{"audit", "export", "--to", file}, func(k string) string {
			if k == "ARBITER_REDIS" {
				return "redis://" + addr
			}
			return ""
		}, nil, &out, &errOut)
		if err != nil {
			t.Fatalf("arbiter audit export = %v (%s)", err, errOut.String())
		}
		return out.String()
	}
	for i := range 5 {
		add(fmt.Sprintf("d%d", i))
	}
	if out := export(); !strings.Contains(out, "5 new records") {
		t.Errorf("first export said %q, want 5 new records", out)
	}
	add("d5")
	add("d1") // delivered again
	if out := export(); !strings.Contains(out, "1 new records") || !strings.Contains(out, "1 duplicates skipped") {
		t.Errorf("second export said %q, want 1 new record and 1 duplicate skipped", out)
	}
	counts := exportedIDs(t, file)
	for i := range 6 {
		if id := fmt.Sprintf("d%d", i); counts[id] != 1 {
			t.Errorf("%s is in the export %d times, want 1", id, counts[id])
		}
	}
	if err := run(ctx, []string{"audit", "export"}, func(string) string { return "" }, nil, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Errorf("arbiter audit export without --to = nil error, want one")
	}
}

// exportedIDs counts the lines of an audit export per decision id.
func exportedIDs(t *testing.T, file string) map[string]int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var rec struct {
			DecisionID string `json:"decision_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		counts[rec.DecisionID]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return counts
}

// Environment of the helper process that TestReconcile starts and kills.
const (
	helperEnv      = "ARBITER_RECONCILE_HELPER"
	helperRedisEnv = "ARBITER_RECONCILE_REDIS"
	helperAddrEnv  = "ARBITER_RECONCILE_GRPC"
	helperArgsEnv  = "ARBITER_RECONCILE_ARGS"
	helperSpoolEnv = "ARBITER_RECONCILE_SPOOL"
)

// TestReconcileHelperProcess is not a test: TestReconcile runs the test binary with only this
// test selected and helperEnv set, and the process then is "arbiter serve" on Redis until it
// is killed.
func TestReconcileHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("the Arbiter process of TestReconcile")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := append([]string{"serve", "--grpc-addr", os.Getenv(helperAddrEnv), "--http-addr", "127.0.0.1:0",
		"--redis", os.Getenv(helperRedisEnv), "--audit-spool", os.Getenv(helperSpoolEnv)}, strings.Fields(os.Getenv(helperArgsEnv))...)
	err := run(ctx, args, func(string) string { return "" }, os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "arbiter serve:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// reconcileRedis is a redis-server with an append-only file synced on every write, that the
// test can kill -9 and start again on the same port and data.
type reconcileRedis struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (r *reconcileRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no")
	redistest.DieWithParent(r.cmd)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(r.cmd, r.done)
	rdb := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer rdb.Close()
	for deadline := time.Now().Add(10 * time.Second); rdb.Ping(r.t.Context()).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not come up", r.addr())
		}
	}
}

func (r *reconcileRedis) kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

func (r *reconcileRedis) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// reconcileServer is the Arbiter process under test.
type reconcileServer struct {
	t     *testing.T
	addr  string
	redis string
	spool string   // --audit-spool, the same across restarts
	args  []string // extra flags of arbiter serve
	cmd   *exec.Cmd
	done  chan struct{}
	log   bytes.Buffer
}

func (s *reconcileServer) start(hc healthpb.HealthClient) {
	s.t.Helper()
	s.cmd = exec.Command(os.Args[0], "-test.run=^TestReconcileHelperProcess$")
	redistest.DieWithParent(s.cmd)
	s.cmd.Env = append(os.Environ(), helperEnv+"=1", helperRedisEnv+"="+s.redis, helperAddrEnv+"="+s.addr,
		helperSpoolEnv+"="+s.spool, helperArgsEnv+"="+strings.Join(s.args, " "))
	s.cmd.Stdout, s.cmd.Stderr = &s.log, &s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start the Arbiter process: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(s.t.Context(), 200*time.Millisecond)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("the Arbiter process exited: %s", s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the Arbiter process did not become healthy: %v", err)
		}
	}
}

func (s *reconcileServer) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestReconcile drives decisions into an "arbiter serve" process on Redis (append-only file, fsync
// always), kills the process with SIGKILL four times and Redis once, restarting each, runs
// the audit export in the middle and at the end, and checks that every decision the client
// got an OK answer for is in the export exactly once: those answered from Redis, and the
// degraded ones answered while Redis was down, which reach the export through the audit
// spool (kept across the kills) once Redis is back.
func TestReconcile(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts processes for about ten seconds")
	}
	rd := &reconcileRedis{t: t, port: freeLoopbackPort(t), dir: t.TempDir()}
	rd.start()
	t.Cleanup(func() {
		select {
		case <-rd.done:
		default:
			rd.kill()
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeLoopbackPort(t)))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	hc := healthpb.NewHealthClient(conn)
	dc := arbiterv1.NewDecisionServiceClient(conn)
	srv := &reconcileServer{t: t, addr: addr, redis: "redis://" + rd.addr(), spool: t.TempDir()}
	srv.start(hc)
	t.Cleanup(func() {
		select {
		case <-srv.done:
		default:
			srv.kill()
		}
	})

	// Load: 3 workers, unique event ids, 300 customers, until stopped.
	var (
		mu       sync.Mutex
		ok       = map[string]string{} // decision id -> event id, for every OK answer
		degraded = map[string]bool{}   // decision ids of the degraded OK answers
		stored   atomic.Int32          // OK answers from Redis (not degraded)
		failed   atomic.Int32
		seq      atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for range 3 {
		wg.Go(func() {
			for !stop.Load() {
				n := seq.Add(1)
				req := &arbiterv1.DecideRequest{
					Event: &arbiterv1.Event{Id: fmt.Sprintf("rc-ev-%d", n), Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, Source: "billing"},
					Customer: &arbiterv1.Customer{Id: fmt.Sprintf("rc-cust-%d", n%300), Timezone: "Europe/London",
						Consents: []*arbiterv1.Consent{{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true}}},
				}
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				resp, err := dc.Decide(ctx, req)
				cancel()
				if err != nil {
					failed.Add(1)
					time.Sleep(5 * time.Millisecond)
					continue
				}
				mu.Lock()
				ok[resp.GetDecisionId()] = req.GetEvent().GetId()
				if resp.GetDegraded() {
					degraded[resp.GetDecisionId()] = true
				} else {
					stored.Add(1)
				}
				mu.Unlock()
			}
		})
	}
	okCount := func() int { return int(stored.Load()) }
	degradedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(degraded) }

	file := filepath.Join(t.TempDir(), "audit.jsonl")
	export := func() {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(t.Context(), []string{"audit", "export", "--to", file, "--redis", "redis://" + rd.addr()},
			func(string) string { return "" }, nil, &out, &errOut); err != nil {
			t.Fatalf("arbiter audit export = %v (%s)", err, errOut.String())
		}
		t.Log(strings.TrimSpace(out.String()))
	}
	// waitProgress lets the load run until n more OK answers from Redis arrived.
	waitProgress := func(n int) {
		t.Helper()
		target := okCount() + n
		for deadline := time.Now().Add(20 * time.Second); okCount() < target; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no progress: %d OK answers, want %d", okCount(), target)
			}
		}
	}

	waitProgress(60)
	for i := range 2 {
		srv.kill()
		t.Logf("kill -9 of the Arbiter process %d after %d OK answers", i+1, okCount())
		srv.start(hc)
		waitProgress(60)
	}
	rd.kill()
	t.Logf("kill -9 of redis-server after %d OK answers", okCount())
	// Redis stays down until degraded answers are in the Arbiter process's spool, and that
	// process is killed before Redis is back: its successor drains them.
	for deadline := time.Now().Add(20 * time.Second); degradedCount() < 20; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d degraded answers 20s after Redis was killed, want 20", degradedCount())
		}
	}
	srv.kill()
	t.Logf("kill -9 of the Arbiter process 3 after %d degraded answers, Redis down", degradedCount())
	rd.start()
	srv.start(hc)
	waitProgress(60)
	export() // part way: the final export resumes from here
	srv.kill()
	t.Logf("kill -9 of the Arbiter process 4 after %d OK answers", okCount())
	srv.start(hc)
	waitProgress(60)
	stop.Store(true)
	wg.Wait()
	waitSpoolDrained(t, srv.spool)
	export()

	counts := exportedIDs(t, file)
	missing, dup := 0, 0
	for id, ev := range ok {
		switch counts[id] {
		case 1:
		case 0:
			missing++
			if missing <= 5 {
				t.Errorf("decision %s (event %s) was answered OK but is not in the export", id, ev)
			}
		default:
			dup++
			t.Errorf("decision %s is in the export %d times, want 1", id, counts[id])
		}
	}
	t.Logf("%d OK answers (%d degraded, %d failed calls during kills); export holds %d decisions; %d missing, %d duplicated",
		len(ok), len(degraded), failed.Load(), len(counts), missing, dup)
	if missing > 0 {
		t.Errorf("%d OK answers have no exported record", missing)
	}
}

// waitSpoolDrained waits until the audit spool in dir holds no record: the running server has
// drained it into Redis.
func waitSpoolDrained(t *testing.T, dir string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
		if err != nil {
			t.Fatal(err)
		}
		var bytes int64
		for _, n := range names {
			if info, err := os.Stat(n); err == nil {
				bytes += info.Size()
			}
		}
		if bytes == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit spool still holds %d bytes in %v 20s after the load stopped", bytes, names)
		}
	}
}

// TestGracefulShutdownUnderLoad sends SIGTERM to an "arbiter serve" process (--shutdown-delay
// 1s) under load, the way a load balancer sees a replica leave: the gRPC health service reports
// NOT_SERVING at once; callers keep sending for another 500 ms (the balancer taking the replica
// out), and those calls are still served; calls in flight when the delay ends (held in Redis by
// CLIENT PAUSE) get their answers; then the process exits cleanly. No caller sees an error.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const (
		delay     = time.Second            // --shutdown-delay
		lbLag     = 500 * time.Millisecond // callers stop sending this long after SIGTERM
		pauseAt   = 300 * time.Millisecond // Redis pauses this long after SIGTERM...
		pauseFor  = 1200 * time.Millisecond
		pauseEnds = pauseAt + pauseFor // ...so calls are held past the delay's end
	)
	rd := &reconcileRedis{t: t, port: freeLoopbackPort(t), dir: t.TempDir()}
	rd.start()
	t.Cleanup(rd.kill)
	// The store budget and the Redis client's read timeout (500 ms by default, which bounds a
	// store call whatever the budget) both far above the pause below: under the race detector
	// on two busy cores, a call held by the pause can take well over its length.
	srv, conn := startServeProcess(t, "redis://"+rd.addr()+"?read_timeout=5s&write_timeout=5s",
		"--store-budget", "5s", "--store-budget-min", "0", "--shutdown-delay", delay.String())
	hc := healthpb.NewHealthClient(conn)
	dc := arbiterv1.NewDecisionServiceClient(conn)

	var (
		termAt    atomic.Int64 // unix nanos of SIGTERM; 0 before
		stop      atomic.Bool  // the callers stop sending
		seq       atomic.Int64
		started   atomic.Int32 // calls started
		afterTerm atomic.Int32 // of those, started after SIGTERM
		answered  atomic.Int32 // calls answered OK
		wg        sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				n := seq.Add(1)
				req := &arbiterv1.DecideRequest{
					Event:    &arbiterv1.Event{Id: fmt.Sprintf("gs-ev-%d", n), Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, Source: "billing"},
					Customer: &arbiterv1.Customer{Id: fmt.Sprintf("gs-cust-%d", n%50), Timezone: "Europe/London"},
				}
				started.Add(1)
				if termAt.Load() != 0 {
					afterTerm.Add(1)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				resp, err := dc.Decide(ctx, req)
				cancel()
				if err != nil {
					t.Errorf("Decide(%s) during shutdown = %v, want an answer", req.GetEvent().GetId(), err)
					continue
				}
				if resp.GetDegraded() {
					t.Errorf("Decide(%s) during shutdown = degraded, want an answer from the store", req.GetEvent().GetId())
				}
				answered.Add(1)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	term := time.Now()
	termAt.Store(term.UnixNano())
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness goes false at once: the health service says NOT_SERVING well within the delay.
	notServingAfter := waitNotServing(t, hc, term, lbLag)
	// Hold the calls in flight past the end of the delay: Redis answers nothing for a while.
	time.Sleep(time.Until(term.Add(pauseAt)))
	direct := redis.NewClient(&redis.Options{Addr: rd.addr()})
	defer direct.Close()
	if err := direct.Do(t.Context(), "CLIENT", "PAUSE", pauseFor.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(term.Add(lbLag)))
	stop.Store(true)
	select {
	case <-srv.done:
	case <-time.After(20 * time.Second):
		t.Fatal("arbiter serve did not exit within 20s of SIGTERM")
	}
	exitedAfter := time.Since(term)
	wg.Wait()
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("arbiter serve exit code after SIGTERM = %d, want 0; log:\n%s", code, srv.log.String())
	}
	if afterTerm.Load() == 0 {
		t.Errorf("no call started after SIGTERM: the test did not exercise the delay")
	}
	if exitedAfter < pauseEnds {
		t.Errorf("arbiter serve exited %v after SIGTERM, before the held calls could finish (%v)", exitedAfter, pauseEnds)
	}
	if started.Load() != answered.Load() {
		t.Errorf("%d calls started, %d answered; want all", started.Load(), answered.Load())
	}
	t.Logf("NOT_SERVING %v after SIGTERM; %d calls, %d of them started after SIGTERM, %d answered; the process exited %v after SIGTERM",
		notServingAfter.Round(time.Millisecond), started.Load(), afterTerm.Load(), answered.Load(), exitedAfter.Round(time.Millisecond))
}

// TestShutdownDelaySecondSignal: a second SIGTERM during a long --shutdown-delay ends the delay,
// and the process exits cleanly at once instead of waiting it out.
func TestShutdownDelaySecondSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	rd := &reconcileRedis{t: t, port: freeLoopbackPort(t), dir: t.TempDir()}
	rd.start()
	t.Cleanup(rd.kill)
	const delay = time.Minute
	srv, conn := startServeProcess(t, "redis://"+rd.addr(), "--shutdown-delay", delay.String())
	first := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The first signal starts the delay: not ready, still serving.
	waitNotServing(t, healthpb.NewHealthClient(conn), first, 5*time.Second)
	second := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("arbiter serve still running 15s after the second SIGTERM (delay %v); log:\n%s", delay, srv.log.String())
	}
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("arbiter serve exit code = %d, want 0; log:\n%s", code, srv.log.String())
	}
	t.Logf("exited %v after the second SIGTERM (delay %v)", time.Since(second).Round(time.Millisecond), delay)
}

// startServeProcess starts an "arbiter serve" process on redisURL with extra flags args, waits
// until it is healthy, and returns it with a client connection; the process is killed at the
// end of the test unless it has exited.
func startServeProcess(t *testing.T, redisURL string, args ...string) (*reconcileServer, *grpc.ClientConn) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeLoopbackPort(t)))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	srv := &reconcileServer{t: t, addr: addr, redis: redisURL, spool: t.TempDir(), args: args}
	srv.start(healthpb.NewHealthClient(conn))
	t.Cleanup(func() {
		select {
		case <-srv.done:
		default:
			srv.kill()
		}
	})
	return srv, conn
}

// waitNotServing polls the gRPC health service until it reports NOT_SERVING and returns how
// long after since that was; it fails the test when that takes longer than within.
func waitNotServing(t *testing.T, hc healthpb.HealthClient, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			return time.Since(since)
		}
		if time.Since(since) > within {
			t.Fatalf("health %v, %v %v after SIGTERM; want NOT_SERVING within %v", resp.GetStatus(), err, time.Since(since), within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
