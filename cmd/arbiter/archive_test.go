package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/archive/archivetest"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// TestArchiveExactlyOnce runs two "arbiter serve" replicas on one Redis with --archive, each
// with its relay, under load. It kills each replica with SIGKILL once and restarts it, cuts
// PostgreSQL off for two seconds in between (through a proxy), and checks that every decision
// answered OK, and every outcome recorded, is in the archive exactly once; and that GetDecision
// reads a decision from the archive once Redis no longer has it.
func TestArchiveExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and a database")
	}
	redisAddr := redistest.Start(t)
	redisURL := "redis://" + redisAddr
	dsn := archivetest.NewDB(t)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL behind a proxy that the test can cut.
	tp := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	proxy := toxiproxy.NewProxy(tp, "postgres", "127.0.0.1:0", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Stop)
	proxied := fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", cfg.User, proxy.Listen, cfg.Database)

	var replicas []*reconcileServer
	var clients []arbiterv1.DecisionServiceClient
	var health []healthpb.HealthClient
	for range 2 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeLoopbackPort(t)))
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		hc := healthpb.NewHealthClient(conn)
		srv := &reconcileServer{t: t, addr: addr, redis: redisURL, spool: t.TempDir(),
			args: []string{"--archive", proxied, "--replay-window", "1h", "--store-budget", "2s", "--store-budget-min", "0"}}
		srv.start(hc)
		t.Cleanup(func() {
			select {
			case <-srv.done:
			default:
				srv.kill()
			}
		})
		replicas = append(replicas, srv)
		clients = append(clients, arbiterv1.NewDecisionServiceClient(conn))
		health = append(health, hc)
	}

	var (
		mu       sync.Mutex
		ok       = map[string]bool{}                     // decision ids of OK answers
		requests = map[string]*arbiterv1.DecideRequest{} // decision id -> request, of the answers not degraded
		outcomes = map[string]string{}                   // decision id -> outcome recorded OK
		seq      atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	zone := daytimeZone(t, time.Now())
	for w := range 4 {
		wg.Go(func() {
			for !stop.Load() {
				n := seq.Add(1)
				dc := clients[(int(n)+w)%2]
				req := &arbiterv1.DecideRequest{
					Event: &arbiterv1.Event{Id: fmt.Sprintf("ar-ev-%d", n), Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, Source: "billing"},
					Customer: &arbiterv1.Customer{Id: fmt.Sprintf("ar-cust-%d", n%200), Timezone: zone,
						Consents: []*arbiterv1.Consent{{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true}}},
				}
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
				resp, err := dc.Decide(ctx, req)
				cancel()
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				mu.Lock()
				ok[resp.GetDecisionId()] = true
				if !resp.GetDegraded() {
					requests[resp.GetDecisionId()] = req
				}
				mu.Unlock()
				if resp.GetAction() == arbiterv1.Action_ACTION_MESSAGE && n%3 == 0 {
					ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
					_, err := dc.RecordOutcome(ctx, &arbiterv1.RecordOutcomeRequest{DecisionId: resp.GetDecisionId(),
						Outcome: arbiterv1.Outcome_OUTCOME_DELIVERED})
					cancel()
					if err == nil {
						mu.Lock()
						outcomes[resp.GetDecisionId()] = arbiterv1.Outcome_OUTCOME_DELIVERED.String()
						mu.Unlock()
					}
				}
			}
		})
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(ok) }
	waitProgress := func(n int) {
		t.Helper()
		target := count() + n
		for deadline := time.Now().Add(30 * time.Second); count() < target; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no progress: %d OK answers, want %d", count(), target)
			}
		}
	}

	waitProgress(100)
	replicas[0].kill()
	t.Logf("kill -9 of replica 1 after %d OK answers", count())
	replicas[0].start(health[0])
	waitProgress(100)
	proxy.Stop()
	t.Logf("PostgreSQL cut off after %d OK answers", count())
	waitProgress(100) // decisions go on while the archive is down
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL back after %d OK answers", count())
	waitProgress(100)
	replicas[1].kill()
	t.Logf("kill -9 of replica 2 after %d OK answers", count())
	replicas[1].start(health[1])
	waitProgress(100)
	stop.Store(true)
	wg.Wait()

	// The relays catch up: every OK decision reaches the archive. The killed replicas' pending
	// entries are claimed after relay.DefaultClaimIdle.
	db, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	ids := make([]string, 0, len(ok))
	for id := range ok {
		ids = append(ids, id)
	}
	archived := func() (rows, distinct int) {
		t.Helper()
		err := db.QueryRow(t.Context(), `SELECT count(*), count(DISTINCT decision_id) FROM arbiter.decisions WHERE decision_id = ANY($1)`, ids).
			Scan(&rows, &distinct)
		if err != nil {
			t.Fatal(err)
		}
		return rows, distinct
	}
	start := time.Now()
	for deadline := start.Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		rows, distinct := archived()
		if rows != distinct {
			t.Fatalf("the archive holds %d rows for %d distinct decisions: some are archived twice", rows, distinct)
		}
		if distinct == len(ids) {
			t.Logf("%d OK answers all archived once, %v after the load stopped", len(ids), time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d OK decisions archived 60s after the load stopped", distinct, len(ids))
		}
	}
	var total int
	if err := db.QueryRow(t.Context(), `SELECT count(*) FROM arbiter.decisions`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total < len(ids) {
		t.Errorf("the archive holds %d decisions, fewer than the %d OK answers", total, len(ids))
	}
	// Outcomes, each once.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var n, distinct int
		outIDs := make([]string, 0, len(outcomes))
		for id := range outcomes {
			outIDs = append(outIDs, id)
		}
		if err := db.QueryRow(t.Context(), `SELECT count(*), count(DISTINCT decision_id) FROM arbiter.outcomes WHERE decision_id = ANY($1)`, outIDs).
			Scan(&n, &distinct); err != nil {
			t.Fatal(err)
		}
		if n == len(outIDs) && distinct == n {
			t.Logf("%d outcomes archived once each", n)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d outcome rows (%d distinct) for %d recorded outcomes", n, distinct, len(outIDs))
		}
	}

	// Archived records leave Redis: within the replay window it keeps only the event's
	// decision id. An event resent is replayed from the archive.
	a, err := archive.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rdbMem := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdbMem.Close()
	// A relay killed between its acknowledgement and its drop leaves that batch's records to
	// expire with the replay window: they are archived all the same. Every other record goes.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		records, err := rdbMem.Keys(t.Context(), "{b:*}:d:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range records {
			id := k[strings.LastIndex(k, ":")+1:]
			if _, err := a.Get(t.Context(), id); err != nil {
				t.Fatalf("decision %s is still in Redis and not archived: %v", id, err)
			}
		}
		if len(records) <= len(ids)/20 {
			t.Logf("%d archived records left in Redis to expire (a killed relay's last drop)", len(records))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d decision records still in Redis after they were archived", len(records), len(ids))
		}
	}
	for id, req := range requests {
		resp, err := clients[1].Decide(t.Context(), req)
		if err != nil || !resp.GetReplayed() || resp.GetDecisionId() != id {
			t.Errorf("Decide(event %s resent after its record was archived) = %s replayed %v, %v; want %s replayed", req.GetEvent().GetId(), resp.GetDecisionId(), resp.GetReplayed(), err, id)
		}
		break
	}

	// The audit export reads the archive: every archived decision, once, also when run twice.
	file := filepath.Join(t.TempDir(), "archive.jsonl")
	for range 2 {
		var out, errOut bytes.Buffer
		if err := run(t.Context(), []string{"audit", "export", "--to", file, "--archive", dsn},
			func(string) string { return "" }, nil, &out, &errOut); err != nil {
			t.Fatalf("arbiter audit export --archive = %v (%s)", err, errOut.String())
		}
	}
	exported := exportedIDs(t, file)
	for _, id := range ids {
		if exported[id] != 1 {
			t.Errorf("decision %s is in the archive export %d times, want 1", id, exported[id])
			break
		}
	}
	if len(exported) != total {
		t.Errorf("the archive export holds %d decisions, the archive %d", len(exported), total)
	}

	// Replay reads the archive: every archived decision is replayed or skipped (degraded).
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"replay", "--policy", "../../policies/default", "--archive", dsn, "--json"},
		func(string) string { return "" }, nil, &out, &errOut); err != nil {
		t.Fatalf("arbiter replay --archive = %v (%s)", err, errOut.String())
	}
	var rep struct{ Replayed, Skipped int }
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("replay --json output %q: %v", out.String(), err)
	}
	if rep.Replayed+rep.Skipped != total || rep.Replayed == 0 {
		t.Errorf("replay --archive replayed %d and skipped %d, want the archive's %d decisions", rep.Replayed, rep.Skipped, total)
	}

	// GetDecision past Redis's window: remove one decision from Redis; the archive answers.
	var some string
	for id := range outcomes {
		some = id
		break
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	keys, err := rdb.Keys(t.Context(), "*"+some+"*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("Redis keys of decision %s = %v, %v", some, keys, err)
	}
	if err := rdb.Del(t.Context(), keys...).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := clients[0].GetDecision(t.Context(), &arbiterv1.GetDecisionRequest{DecisionId: some})
	if err != nil || got.GetRecord().GetDecisionId() != some || len(got.GetRecord().GetOutcomes()) != 1 {
		t.Errorf("GetDecision(%s) once Redis forgot it = %v, %v; want the archived record with its outcome", some, got, err)
	}
	// An outcome reported past the window is recorded all the same, and archived.
	if _, err := clients[1].RecordOutcome(t.Context(), &arbiterv1.RecordOutcomeRequest{DecisionId: some,
		Outcome: arbiterv1.Outcome_OUTCOME_OPENED}); err != nil {
		t.Fatalf("RecordOutcome(%s) once Redis forgot the decision = %v", some, err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		outs, err := a.Outcomes(t.Context(), some)
		if err == nil && len(outs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive Outcomes(%s) = %v, %v; want the late OUTCOME_OPENED too", some, outs, err)
		}
	}
}

// TestStateRebuiltAfterRedisLoss: a customer reaches the default policy's daily cap of
// collection messages, and a card its retries; Redis then loses its data (FLUSHALL, as a
// restart without persistence). The next decisions still see the cap reached and the retries
// counted: the server rebuilds the customer's state from the archive before deciding.
func TestStateRebuiltAfterRedisLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and uses PostgreSQL")
	}
	redisAddr := redistest.Start(t)
	dsn := archivetest.NewDB(t)
	grpcAddr, _, _, logs := startServe(t, "--redis", "redis://"+redisAddr, "--archive", dsn, "--audit-spool", t.TempDir())
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dc := arbiterv1.NewDecisionServiceClient(conn)
	zone := daytimeZone(t, time.Now())
	overdueReq := func(id string) *arbiterv1.DecideRequest {
		return &arbiterv1.DecideRequest{
			Event: &arbiterv1.Event{Id: id, Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, Source: "billing"},
			Customer: &arbiterv1.Customer{Id: "rebuild-cust", Timezone: zone,
				Consents:          []*arbiterv1.Consent{{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true}},
				PreferredChannels: []arbiterv1.Channel{arbiterv1.Channel_CHANNEL_EMAIL}},
		}
	}
	decide := func(req *arbiterv1.DecideRequest) *arbiterv1.DecideResponse {
		t.Helper()
		resp, err := dc.Decide(t.Context(), req)
		if err != nil {
			t.Fatalf("Decide(%s) = %v", req.GetEvent().GetId(), err)
		}
		return resp
	}
	// Until the cap: MESSAGEs, then none.
	var messages int
	var capped *arbiterv1.DecideResponse
	for i := range 6 {
		resp := decide(overdueReq(fmt.Sprintf("rb-ev-%d", i)))
		if resp.GetDegraded() {
			t.Fatalf("Decide(rb-ev-%d) degraded: %v", i, resp.GetReasons())
		}
		if resp.GetAction() == arbiterv1.Action_ACTION_MESSAGE {
			messages++
			continue
		}
		capped = resp
		break
	}
	if capped == nil || messages == 0 {
		t.Fatalf("%d MESSAGEs and no capped answer in 6 overdue events: the test needs the default cap", messages)
	}
	reasons := func(r *arbiterv1.DecideResponse) []string {
		var out []string
		for _, x := range r.GetReasons() {
			out = append(out, x.GetCode())
		}
		return out
	}
	t.Logf("%d MESSAGEs, then %v %v", messages, capped.GetAction(), reasons(capped))

	// The relay archives them; Redis then loses everything.
	a, err := archive.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		hist, err := a.CustomerHistory(t.Context(), "rebuild-cust", time.Now().Add(-time.Hour))
		if err == nil && len(hist) == messages+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive holds %d decisions of the customer, want %d", len(hist), messages+1)
		}
	}
	const rebuiltLog = "customer state rebuilt from the archive"
	before := strings.Count(logs.String(), rebuiltLog) // the customer was new to Redis: rebuilt once, from nothing
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	if err := rdb.FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}

	// The cap holds after the loss.
	after := decide(overdueReq("rb-ev-after"))
	if after.GetAction() == arbiterv1.Action_ACTION_MESSAGE || after.GetDegraded() {
		t.Errorf("Decide(overdue after Redis lost its data) = %v degraded %v %v; want the cap to hold, as before the loss (%v %v)",
			after.GetAction(), after.GetDegraded(), reasons(after), capped.GetAction(), reasons(capped))
	}
	// Rebuilt once after the loss; once rebuilt, the state is whole: no rebuild for the next.
	decide(overdueReq("rb-ev-after-2"))
	if n := strings.Count(logs.String(), rebuiltLog) - before; n != 1 {
		t.Errorf("state rebuilt %d times after the loss, want once", n)
	}
}

// A customer reaches the frequency cap, asks to be erased, and then Redis loses its data: the
// erasure deleted the archived decisions, yet the cap still holds after the rebuild, from
// what the erasure's tombstone kept.
func TestErasureKeepsCapAfterRedisLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and uses PostgreSQL")
	}
	redisAddr := redistest.Start(t)
	dsn := archivetest.NewDB(t)
	grpcAddr, _, _, _ := startServe(t, "--redis", "redis://"+redisAddr, "--archive", dsn, "--audit-spool", t.TempDir())
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dc, fc := arbiterv1.NewDecisionServiceClient(conn), arbiterv1.NewFeatureServiceClient(conn)
	const cust = "erase-cust"
	zone := daytimeZone(t, time.Now())
	overdueReq := func(id string) *arbiterv1.DecideRequest {
		return &arbiterv1.DecideRequest{
			Event: &arbiterv1.Event{Id: id, Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, Source: "billing"},
			Customer: &arbiterv1.Customer{Id: cust, Timezone: zone,
				Consents:          []*arbiterv1.Consent{{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true}},
				PreferredChannels: []arbiterv1.Channel{arbiterv1.Channel_CHANNEL_EMAIL}},
		}
	}
	var decided int
	capped := false
	for i := range 6 {
		resp, err := dc.Decide(t.Context(), overdueReq(fmt.Sprintf("er-ev-%d", i)))
		if err != nil || resp.GetDegraded() {
			t.Fatalf("Decide(er-ev-%d) = %v, %v", i, resp, err)
		}
		decided++
		if resp.GetAction() != arbiterv1.Action_ACTION_MESSAGE {
			capped = true
			break
		}
	}
	if !capped {
		t.Fatal("no capped answer in 6 overdue events: the test needs the default cap")
	}
	a, err := archive.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		hist, err := a.CustomerHistory(t.Context(), cust, time.Time{})
		if err == nil && len(hist) == decided {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive holds %d decisions of the customer, want %d", len(hist), decided)
		}
	}

	er, err := fc.EraseCustomer(t.Context(), &arbiterv1.EraseCustomerRequest{CustomerId: cust, Reason: "ticket-9"})
	if err != nil {
		t.Fatalf("EraseCustomer() = %v", err)
	}
	// The relay dropped the records from Redis once archived: the store erased the event keys.
	if got := er.GetErasure().GetErased(); got["archived_decisions"] != int64(decided) || got["events"] != int64(decided) {
		t.Errorf("EraseCustomer().erased = %v, want %d archived decisions and %d events", got, decided, decided)
	}
	// A relay pass later, the archive still holds none of them.
	time.Sleep(300 * time.Millisecond)
	if hist, err := a.CustomerHistory(t.Context(), cust, time.Time{}); err != nil || len(hist) != 0 {
		t.Errorf("archive after erasure holds %d decisions (%v), want none", len(hist), err)
	}
	if tombs, err := a.Erasures(t.Context(), cust); err != nil || len(tombs) != 1 || tombs[0].Reason != "ticket-9" {
		t.Errorf("Erasures() = %+v, %v, want the tombstone", tombs, err)
	}
	exp, err := fc.ExportCustomer(t.Context(), &arbiterv1.ExportCustomerRequest{CustomerId: cust})
	if err != nil || !exp.GetArchiveIncluded() || len(exp.GetDecisions()) != 0 || len(exp.GetErasures()) != 1 {
		t.Errorf("ExportCustomer(after erasure) = archive %v, %d decisions, %d erasures, %v; want archive, 0, 1",
			exp.GetArchiveIncluded(), len(exp.GetDecisions()), len(exp.GetErasures()), err)
	}

	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	if err := rdb.FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	after, err := dc.Decide(t.Context(), overdueReq("er-ev-after"))
	if err != nil || after.GetAction() == arbiterv1.Action_ACTION_MESSAGE || after.GetDegraded() {
		t.Errorf("Decide(after erasure and Redis loss) = %v degraded %v, %v; want the cap to hold", after.GetAction(), after.GetDegraded(), err)
	}
}
