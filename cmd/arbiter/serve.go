package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

	"github.com/arbiter-dev/arbiter/breaker"
	"github.com/arbiter-dev/arbiter/console"
	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/guard"
	"github.com/arbiter-dev/arbiter/rollout"
	"github.com/arbiter-dev/arbiter/server"
	"github.com/arbiter-dev/arbiter/spool"
	"github.com/arbiter-dev/arbiter/stream"
)

// serveConfig is the configuration of "arbiter serve".
type serveConfig struct {
	grpcAddr        string
	httpAddr        string
	redisURL        string
	policyPath      string
	logLevel        slog.Level
	pprof           bool
	shutdownTimeout time.Duration
	shutdownDelay   time.Duration
	storeBudget     time.Duration
	storeBudgetMin  time.Duration
	breakerFailures int
	breakerCoolDown time.Duration
	breakerMinSpan  time.Duration
	requireApproval string
	admissionMin    int
	maxInFlight     int
	auditSpool      string
	auditSpoolMiB   int
	retention       time.Duration
	loadTestReports string
	archive         archiveConfig
	nats            natsConfig
	security        guard.Config
	// redisPassword is the Redis password (from --redis-password-file, ARBITER_REDIS_PASSWORD
	// or --redis itself), kept to redact errors; redisURL then carries it. passwordInArgs:
	// it came in a --redis on the command line.
	redisPassword  string
	passwordInArgs bool
}

func serveHelp() help {
	return help{
		summary: "run the gRPC decision service",
		usage:   []string{"serve [flags]"},
		detail: `Serves Decide, RecordOutcome, GetDecision, the feature and policy services and gRPC health
on --grpc-addr (gRPC, gRPC-Web and Connect JSON), and /healthz, /readyz, /metrics, /openapi.json and the operator console on --http-addr, until SIGINT or SIGTERM;
then it stops gracefully. With --nats it also decides events streamed on NATS JetStream
(docs/streams.md). Without --redis the store is embedded in the process (state is lost
on exit); without --policy it serves the bundled default policy. Every flag can be set with
ARBITER_<FLAG> (for example ARBITER_GRPC_ADDR); the command line wins.`,
		examples: []string{
			"arbiter serve                                   # embedded store, default policy, loopback only",
			"arbiter serve --redis redis://127.0.0.1:6379 --policy policies/default",
			"ARBITER_LOG_LEVEL=debug arbiter serve --pprof",
			"arbiter serve --redis redis://127.0.0.1:6379 --nats nats://127.0.0.1:4222   # events in on NATS JetStream too",
		},
	}
}

// logLevel is the value of --log-level: slog's level names (and their offsets, "info+2"),
// with an error that lists the names.
type logLevel struct{ level *slog.Level }

func (l logLevel) String() string {
	if l.level == nil {
		return ""
	}
	return strings.ToLower(l.level.String())
}

func (l logLevel) Set(s string) error {
	if err := l.level.UnmarshalText([]byte(s)); err != nil {
		return errors.New("want debug, info, warn or error")
	}
	return nil
}

func parseServeConfig(args []string, env func(string) string, stdout io.Writer) (serveConfig, error) {
	const cmd = "arbiter serve"
	c := serveConfig{logLevel: slog.LevelInfo}
	fs := newFlagSet(cmd)
	fs.StringVar(&c.grpcAddr, "grpc-addr", "127.0.0.1:50051", "gRPC listen address")
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP admin listen address: /healthz, /readyz, /metrics")
	fs.StringVar(&c.redisURL, "redis", "", "Redis: redis://host:port[/db], rediss://..., redis+cluster://h1:p1,h2:p2 or h1:p1,h2:p2; empty: the embedded in-process store")
	redisPasswordFile := fs.String("redis-password-file", "", "file holding the Redis password (or set "+redisPasswordEnv+"); keeps it off the command line")
	fs.StringVar(&c.policyPath, "policy", "", "policy bundle file or folder, reloaded on change and SIGHUP; empty: the bundled default policy")
	fs.Var(logLevel{&c.logLevel}, "log-level", "log level: debug, info, warn or error")
	fs.BoolVar(&c.pprof, "pprof", false, "serve runtime profiles under /debug/pprof/ on the HTTP admin address (with --auth-tokens: to the admin role only)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight calls may take to finish at shutdown before they are cut")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 0, "at shutdown, how long to keep serving new calls after readiness went false, so that load balancers stop routing here first (for example 5s behind a Kubernetes Service)")
	fs.DurationVar(&c.storeBudget, "store-budget", server.DefaultStoreBudgetMax, "most time one Decide may spend on the store before it degrades (less when the caller's deadline is nearer)")
	fs.DurationVar(&c.storeBudgetMin, "store-budget-min", defaultStoreBudgetMin, "with --redis, size the store budget from the measured latency: 4× the p99 of recent store calls, at least this and at most --store-budget; 0 keeps it at --store-budget")
	fs.IntVar(&c.breakerFailures, "breaker-failures", breaker.DefaultThreshold, "consecutive failures of one store shard (a cluster master) that open its circuit breaker (Decide then degrades at once for that shard's customers)")
	fs.IntVar(&c.admissionMin, "admission-min", server.DefaultAdmissionMin, "with --redis, the fewest decisions a store shard always admits at once; above it the shard's limit is learned from its latency (up to --max-in-flight) and the excess gets RESOURCE_EXHAUSTED; 0 turns admission off")
	fs.StringVar(&c.requireApproval, "require-approval", "auto", "four-eyes policy activation: a version is activated only after an identity other than its author approved it (arbiter policy approve); auto: on when --auth-tokens is set; true or false")
	fs.DurationVar(&c.breakerMinSpan, "breaker-min-span", 100*time.Millisecond, "how long consecutive failures of one store shard must go on before they open its breaker: a moment's stall of this server, which makes every call in flight overrun its budget at once, then opens nothing (0: --breaker-failures open it however close together)")
	fs.DurationVar(&c.breakerCoolDown, "breaker-cooldown", breaker.DefaultCoolDown, "how long a shard's open circuit breaker waits before it lets one store call probe")
	fs.IntVar(&c.maxInFlight, "max-in-flight", guard.DefaultMaxInFlight, "requests served at once; beyond it calls get RESOURCE_EXHAUSTED at once (load shedding, health checks exempt)")
	fs.StringVar(&c.auditSpool, "audit-spool", defaultAuditSpool(env), "with --redis: directory where degraded decisions are recorded until Redis takes them into the audit trail; empty: none (degraded decisions are then answered UNAVAILABLE while Redis is down)")
	fs.IntVar(&c.auditSpoolMiB, "audit-spool-max-mib", spool.DefaultMaxBytes>>20, "most MiB of records the audit spool holds while Redis is down; when it is full, degraded decisions are answered UNAVAILABLE; at least 1")
	fs.DurationVar(&c.retention, "record-retention", featurestore.DefaultRetention, "how long decision records, their event ids (replays), outcomes and audit entries stay in the store; at least 1m")
	fs.StringVar(&c.loadTestReports, "loadtest-reports", "loadtest-report", "folder of load-test reports (make loadtest) that the console on the HTTP admin address lists; empty: none")
	c.archive.registerFlags(fs)
	c.nats.registerFlags(fs)
	c.security.RegisterFlags(fs)
	pos, err := parseArgs(fs, serveHelp(), args, env, stdout)
	if err != nil {
		return c, err
	}
	if len(pos) > 0 {
		return c, unexpectedArgs(cmd, pos)
	}
	if c.retention < time.Minute {
		return c, usagef(cmd, "serve: --record-retention %v: must be at least 1m", c.retention)
	}
	if c.shutdownDelay < 0 || c.shutdownTimeout < 0 {
		return c, usagef(cmd, "serve: --shutdown-delay %v, --shutdown-timeout %v: must not be negative", c.shutdownDelay, c.shutdownTimeout)
	}
	if c.auditSpoolMiB < 1 {
		return c, usagef(cmd, "serve: --audit-spool-max-mib %d: must be at least 1", c.auditSpoolMiB)
	}
	if err := c.archive.check(c.redisURL); err != nil {
		return c, usagef(cmd, "%v", err)
	}
	if err := c.nats.check(); err != nil {
		return c, usagef(cmd, "%v", err)
	}
	pw, err := readRedisPassword(*redisPasswordFile, env)
	if err != nil {
		return c, fmt.Errorf("serve: %w", err)
	}
	if pw != "" {
		if c.redisURL, err = withRedisPassword(c.redisURL, pw); err != nil {
			return c, fmt.Errorf("serve: %w", err)
		}
		c.redisPassword = pw
	} else if c.redisPassword = urlPassword(c.redisURL); c.redisPassword != "" {
		c.passwordInArgs = c.redisURL != env("ARBITER_REDIS")
	}
	c.security.GRPCAddr = c.grpcAddr
	c.security.AdminAddr, c.security.Pprof = c.httpAddr, c.pprof
	return c, nil
}

// defaultAuditSpool is the default of --audit-spool: "audit-spool" in the state directory that
// systemd gives the service (StateDirectory=, passed as $STATE_DIRECTORY), else in the working
// directory.
func defaultAuditSpool(env func(string) string) string {
	if dirs := env("STATE_DIRECTORY"); dirs != "" {
		first, _, _ := strings.Cut(dirs, ":")
		return filepath.Join(first, "audit-spool")
	}
	return "audit-spool"
}

// serveGCPercent is the garbage collector's target of `arbiter serve` unless GOGC is set.
const serveGCPercent = 400

// runServe is the "serve" command: it runs the decision service until ctx is done (SIGINT or
// SIGTERM), then shuts down gracefully.
func runServe(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	// Config.
	cfg, err := parseServeConfig(args, env, stdout)
	if err != nil {
		return err
	}
	// The live heap is small (about 10 MiB under load) and churns per request; Go's default
	// GOGC of 100 collects it hundreds of times a second. GOGC, when set, wins.
	if env("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
	// cleanup holds what to release at the end, last first, with a context that outlives ctx.
	var cleanup []func(context.Context)
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i](cctx)
		}
	}()

	// Telemetry: JSON logs, metrics in Prometheus format, spans through the gRPC stats handler,
	// the store hooks and the store calls.
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	featurestore.SetClientLogger(logger)
	metrics, err := newMetricsExport(ctx)
	if err != nil {
		return err
	}
	mp := metrics.provider
	cleanup = append(cleanup, func(ctx context.Context) { _ = mp.Shutdown(ctx) })
	tp, err := newTracerProvider(ctx, env)
	if err != nil {
		return err
	}
	if sdk, ok := tp.(*sdktrace.TracerProvider); ok {
		cleanup = append(cleanup, func(ctx context.Context) { _ = sdk.Shutdown(ctx) })
	}

	// Security: the loopback rule, tokens, TLS, rate limits, the card guard and input limits
	// (docs/security.md). Their interceptors run before any other.
	sec, err := guard.New(cfg.security, mp, logger)
	if err != nil {
		return err
	}
	for _, notice := range []string{sec.Notice, sec.AdminNotice} {
		if strings.HasPrefix(notice, "INSECURE") {
			logger.Warn(notice)
		} else {
			logger.Info(notice)
		}
	}
	if cfg.passwordInArgs {
		logger.Warn("the Redis password is on the command line (--redis), where other local users can read it; use --redis-password-file or " + redisPasswordEnv)
	}

	// Store. With an archive, Redis keeps decision records only for the replay window.
	retention := cfg.retention
	if cfg.archive.dsn != "" {
		retention = cfg.archive.replayWindow
	} else if cfg.redisURL != "" {
		logger.Warn("no --archive: decision records live only in Redis, for --record-retention; configure --archive for a durable history",
			"record_retention", cfg.retention.String())
	}
	storeOpts := []featurestore.Option{featurestore.WithRetention(retention)}
	if cfg.archive.dsn != "" {
		// Redis keeps a marker of each customer's whole state, so that a Redis that lost its
		// data is seen, and the state rebuilt from the archive before the customer's next
		// decision.
		storeOpts = append(storeOpts, featurestore.WithStateMarker())
	}
	store, storeName, err := openStore(cfg.redisURL, tp, mp, storeOpts...)
	if err != nil {
		return redactError(err, cfg.redisPassword)
	}
	cleanup = append(cleanup, func(context.Context) { _ = store.Close() })

	// Audit spool: with Redis, a degraded decision (Redis down or too slow) is recorded on
	// local disk before it is answered, and drained into Redis's audit trail once Redis is
	// back. The embedded store needs none.
	var auditSpool *spool.Spool
	switch {
	case cfg.redisURL != "" && cfg.auditSpool != "":
		auditSpool, err = spool.Open(cfg.auditSpool, spool.WithMeterProvider(mp), spool.WithLogger(logger),
			spool.WithMaxBytes(int64(cfg.auditSpoolMiB)<<20))
		if err != nil {
			return err
		}
		cleanup = append(cleanup, func(context.Context) { _ = auditSpool.Close() })
		logger.Info("audit spool open", "dir", cfg.auditSpool, "pending_bytes", auditSpool.PendingBytes())
	case cfg.redisURL != "":
		logger.Warn("no audit spool: decisions that degrade are answered UNAVAILABLE, as they cannot be recorded")
	}

	// Policy.
	pol, err := loadServePolicy(cfg.policyPath)
	if err != nil {
		return err
	}
	policies := rollout.NewHolder(pol)
	// Governance: published versions in the store; the fleet's active version wins over pol.
	var fourEyes bool
	switch cfg.requireApproval {
	case "auto":
		fourEyes = cfg.security.AuthTokensFile != ""
	case "true":
		fourEyes = true
	case "false":
	default:
		return fmt.Errorf("serve: --require-approval %q: want auto, true or false", cfg.requireApproval)
	}
	gov, err := newServeGovernance(ctx, cfg.redisURL, policies, logger, mp, fourEyes)
	if err != nil {
		return redactError(err, cfg.redisPassword)
	}
	cleanup = append(cleanup, func(context.Context) { _ = gov.close() })

	// Server. Extra gRPC options (TLS, authentication, card guard, rate limits, shedding) are
	// added to grpcOpts.
	breakers, err := breaker.NewSet(breaker.WithMeterProvider(mp),
		breaker.WithThreshold(cfg.breakerFailures), breaker.WithCoolDown(cfg.breakerCoolDown), breaker.WithMinSpan(cfg.breakerMinSpan))
	if err != nil {
		return err
	}
	// Load shedding comes first, so an overload costs as little as possible.
	shed, err := guard.NewShedder(cfg.maxInFlight, guard.WithShedMeterProvider(mp))
	if err != nil {
		return err
	}
	grpcOpts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(shed.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(shed.StreamServerInterceptor()),
	}, sec.PortServerOptions(nil)...)
	// The console's live decision mix counts what passed the security layer.
	mix := console.NewMix()
	grpcOpts = append(grpcOpts, grpc.ChainUnaryInterceptor(mix.UnaryInterceptor()))
	// Archive: opened and relayed into in the background, so that PostgreSQL being down at
	// start stops nothing.
	srvOpts := []server.Option{
		server.WithLogger(logger),
		server.WithMeterProvider(mp),
		server.WithTracerProvider(tp),
		server.WithStoreBudget(server.Budget{Max: cfg.storeBudget, Min: cfg.storeBudgetMin}),
		server.WithBreakers(breakers),
		server.WithShadow(gov.shadow), server.WithPolicySync(gov.sync),
		server.WithAuditSpool(auditSpool),
		server.WithGRPCOptions(grpcOpts...),
	}
	if cfg.redisURL != "" && cfg.admissionMin > 0 {
		hi := cfg.maxInFlight
		if hi <= 0 {
			hi = guard.DefaultMaxInFlight
		}
		srvOpts = append(srvOpts, server.WithAdmission(cfg.admissionMin, hi))
	}
	adminCfg := server.AdminConfig{Metrics: metrics.handler, Pprof: cfg.pprof, Auth: sec.Auth}
	var arch *archiving
	if cfg.archive.dsn != "" {
		rs, _ := store.(*featurestore.Redis) // --archive needs --redis
		arch = &archiving{cfg: cfg.archive, store: rs, logger: logger, mp: mp}
		if err := arch.tryOpen(ctx, 5*time.Second); err != nil {
			logger.Warn("archive not open at start: decisions of customers whose state Redis cannot vouch for degrade until it is",
				"archive", redactDSN(cfg.archive.dsn), "err", err)
		}
		srvOpts = append(srvOpts, server.WithArchive(arch))
		adminCfg.Archive = arch.status
	}
	// Confirm's revocations go out on the stream edge when there is one; the edge is opened
	// after the server, which it decides through.
	var revocations atomic.Pointer[stream.Edge]
	srvOpts = append(srvOpts, server.WithRevocations(func(ctx context.Context, r *arbiterv1.Revocation) error {
		if e := revocations.Load(); e != nil {
			return e.Revoke(ctx, r)
		}
		return nil
	}))
	srv := server.New(store, policies, srvOpts...)
	// Warm the store before serving (scripts loaded, connections open), so that the first
	// decisions do not degrade for a cold start. A store that is down is not fatal: /readyz
	// says "warming up", decisions degrade, and warming goes on until the store answers.
	warmCtx, cancelWarm := context.WithTimeout(ctx, 2*time.Second)
	err = srv.Warm(warmCtx)
	cancelWarm()
	if err != nil {
		logger.Warn("store not answering at start-up: unready and decisions degrade until it does", "store", storeName, "err", redactError(err, cfg.redisPassword).Error())
		go keepWarming(ctx, srv)
	}
	gs := srv.NewGRPCServer()
	gov.service.Register(gs)
	// Connect and gRPC-Web share the gRPC port: HTTP/1.1 connections go to web, transcoded
	// onto gs (docs/api.md).
	connectHandler, err := newConnectHandler(gs, sec)
	if err != nil {
		return err
	}
	web := sec.HTTPServer(connectHandler)
	// The operator console and /openapi.json on the admin address (docs/console.md).
	if adminCfg.Console, err = console.New(console.Config{
		Decisions: srv, Customers: srv, Policies: gov.service, Explainer: srv, Mix: mix, Auth: sec.Auth, LoadTestDir: cfg.loadTestReports,
	}); err != nil {
		return err
	}
	admin := &http.Server{
		Handler:           srv.AdminHandler(adminCfg),
		ReadHeaderTimeout: 5 * time.Second,
	}

	// Streams: events in and decisions out on NATS JetStream, decided by srv in process.
	var streams *streaming
	if cfg.nats.url != "" {
		if streams, err = openStreaming(ctx, cfg.nats, srv, logger, mp); err != nil {
			return err
		}
		cleanup = append(cleanup, func(context.Context) { streams.close() })
		revocations.Store(streams.edge)
	}

	// Serve.
	grpcLis, err := net.Listen("tcp", cfg.grpcAddr)
	if err != nil {
		return fmt.Errorf("listen gRPC: %w", err)
	}
	port := sec.SharePort(sec.LimitListener(grpcLis)) // --max-connections for both halves
	httpLis, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("listen HTTP: %w", err)
	}
	errc := make(chan error, 5) // gRPC port, gRPC, Connect, HTTP, stream
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := port.Serve(); err != nil {
			errc <- fmt.Errorf("serve gRPC port: %w", err)
		}
	})
	wg.Go(func() {
		if err := gs.Serve(port.GRPC); err != nil {
			errc <- fmt.Errorf("serve gRPC: %w", err)
		}
	})
	wg.Go(func() {
		if err := web.Serve(port.HTTP); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve Connect: %w", err)
		}
	})
	wg.Go(func() {
		if err := admin.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve HTTP: %w", err)
		}
	})
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	wg.Go(func() { _ = gov.sync.Run(watchCtx) })
	wg.Go(func() { srv.RunSpoolDrain(watchCtx) }) // returns at once without a spool
	// The stream stops pulling at shutdown, before the gRPC server stops; the events in hand
	// finish (each within its call timeout), the others are handed back to JetStream.
	streamCtx, stopStream := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStream()
	var streamDone sync.WaitGroup
	if streams != nil {
		streamDone.Go(func() {
			if err := streams.edge.Run(streamCtx); err != nil {
				errc <- fmt.Errorf("stream: %w", err)
			}
		})
	}
	if arch != nil {
		// The relay stops last: it gets what the last calls committed.
		relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
		var relayDone sync.WaitGroup
		relayDone.Go(func() { arch.run(relayCtx) })
		defer func() { stopRelay(); relayDone.Wait() }()
	}
	if cfg.policyPath != "" {
		reloads, err := mp.Meter("github.com/arbiter-dev/arbiter/cmd/arbiter").Int64Counter("arbiter.policy.reloads",
			metric.WithDescription("Policy reloads from disk, by result."), metric.WithUnit("{reload}"))
		if err != nil {
			return err
		}
		for _, result := range [...]string{rollout.ReloadSwapped, rollout.ReloadUnchanged, rollout.ReloadFailed} {
			reloads.Add(ctx, 0, metric.WithAttributes(attribute.String("result", result))) // scraped from the start
		}
		wg.Go(func() {
			if err := rollout.Watch(watchCtx, cfg.policyPath, policies, logger, reloads); err != nil {
				logger.Error("policy watcher stopped: reloads are off", "err", err)
			}
		})
	}
	ref := pol.Ref()
	logger.Info("serving",
		"grpc_addr", grpcLis.Addr().String(), "http_addr", httpLis.Addr().String(), "store", storeName,
		"policy", ref.ID, "policy_version", ref.Version, "policy_digest", ref.Digest)

	select {
	case <-ctx.Done():
	case err = <-errc:
		logger.Error("server failed", "err", err)
	}

	// Graceful stop: report not ready, keep serving for the delay while load balancers take
	// this replica out, let in-flight calls finish within the timeout, then cut what is left.
	logger.Info("shutting down", "delay", cfg.shutdownDelay.String(), "timeout", cfg.shutdownTimeout.String())
	srv.Drain()
	stopStream() // a stream has no load balancer to wait for
	if err == nil && cfg.shutdownDelay > 0 {
		waitShutdownDelay(cfg.shutdownDelay, logger)
	}
	streamDone.Wait()
	stopWatch()
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(cfg.shutdownTimeout)
	select {
	case <-stopped:
		timer.Stop()
	case <-timer.C:
		logger.Warn("shutdown timeout: closing remaining calls")
		gs.Stop()
		<-stopped
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if herr := web.Shutdown(hctx); herr != nil {
		web.Close()
	}
	port.Close()
	if herr := admin.Shutdown(hctx); herr != nil {
		admin.Close()
	}
	wg.Wait()
	logger.Info("stopped")
	return err
}

// newTracerProvider returns a tracer provider that exports spans over OTLP/gRPC when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (the exporter reads
// the other standard OTEL_EXPORTER_OTLP_* variables, and the SDK OTEL_TRACES_SAMPLER), and a
// no-op one otherwise, so that spans cost nothing when nobody collects them.
func newTracerProvider(ctx context.Context, env func(string) string) (trace.TracerProvider, error) {
	if env("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return tracenoop.NewTracerProvider(), nil
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", "arbiter")))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// closingStore is a server.Store that can be closed.
type closingStore interface {
	server.Store
	Close() error
}

// openStore returns the Redis store for redisURL, instrumented with redisotel, or the
// embedded store when redisURL is empty, and a name for logs (never the URL: it may hold a
// password).
func openStore(redisURL string, tp trace.TracerProvider, mp metric.MeterProvider, opts ...featurestore.Option) (closingStore, string, error) {
	if redisURL == "" {
		return featurestore.NewMemory(opts...), "embedded", nil
	}
	client, err := featurestore.Dial(redisURL)
	if err != nil {
		return nil, "", fmt.Errorf("redis: %w", err)
	}
	// A span per Redis command costs an allocation-heavy hook on the hot path; it is only
	// worth it when spans are exported (the server's own store spans remain either way).
	_, exported := tp.(*sdktrace.TracerProvider)
	if err := featurestore.Instrument(client, mp, tp, exported); err != nil {
		client.Close()
		return nil, "", err
	}
	return featurestore.NewRedis(client, opts...), "redis", nil
}

// loadServePolicy compiles the bundle at path, or the bundled default policy when path is
// empty. A bundle that does not compile stops the start-up with the error.
func loadServePolicy(path string) (*decision.Policy, error) {
	if path == "" {
		return decision.DefaultPolicy(), nil
	}
	p, err := decision.LoadPolicy(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return p, nil
}

// waitShutdownDelay waits out the shutdown delay d. A second SIGINT or SIGTERM ends it early,
// for an operator who does not want to wait (the calls in flight still get the shutdown
// timeout).
func waitShutdownDelay(d time.Duration, logger *slog.Logger) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case s := <-sig:
		logger.Warn("second signal: shutdown delay cut short", "signal", s.String())
	}
}

// defaultStoreBudgetMin is --store-budget-min's default: a store answering in 1 ms gets 10 ms.
const defaultStoreBudgetMin = 10 * time.Millisecond

// keepWarming retries Server.Warm every second until it succeeds or ctx ends.
func keepWarming(ctx context.Context, srv *server.Server) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := srv.Warm(wctx)
		cancel()
		if err == nil {
			return
		}
	}
}
