package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster timings. The node timeout is far below Redis's default (15 s) so that a failover in
// a test takes about two seconds instead of half a minute.
const (
	clusterNodeTimeout  = 1000 * time.Millisecond
	clusterReadyTimeout = 20 * time.Second
	clusterPollEvery    = 25 * time.Millisecond
)

// Cluster is a real local Redis Cluster of six redis-server processes on loopback ports: three
// masters, each with one replica. StartCluster creates it; the processes are killed and their
// files removed when the test ends. Its methods are safe for concurrent use.
type Cluster struct {
	t   testing.TB
	bin string

	mu    sync.Mutex
	nodes []*clusterNode
}

// clusterNode is one redis-server process of a Cluster.
type clusterNode struct {
	addr    string
	port    int
	busPort int
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited
	killed  bool
	logFile string
}

// StartCluster starts a six-node Redis Cluster (three masters, three replicas) on free loopback
// ports, creates it with `redis-cli --cluster create --cluster-replicas 1`, and waits until every
// node reports cluster_state:ok with all 16384 slots assigned. It calls t.Fatal when
// redis-server or redis-cli is missing or the cluster does not form within 20 s.
//
// Nodes run with cluster-node-timeout 1000 ms (a failover takes about 2 s),
// cluster-require-full-coverage no (a slot without a master fails only its own keys), no
// persistence, and cluster-replica-validity-factor 0 (a replica always takes over).
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := startCluster(t)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startCluster(t testing.TB) (*Cluster, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redistest: redis-server is not installed (run `make test`, which installs the Debian package redis-server): %w", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("redistest: redis-cli is not installed: %w", err)
	}
	c := &Cluster{t: t, bin: bin}
	t.Cleanup(c.stopAll)
	root := t.TempDir()
	for i := range 6 {
		n := &clusterNode{dir: filepath.Join(root, strconv.Itoa(i))}
		if err := os.Mkdir(n.dir, 0o700); err != nil {
			return nil, fmt.Errorf("redistest: %w", err)
		}
		// A probed port can be taken before the server binds it; try a few pairs.
		for attempt := 0; ; attempt++ {
			if n.port, err = freePort(); err == nil {
				n.busPort, err = freePort()
			}
			if err != nil {
				return nil, fmt.Errorf("redistest: find a free port: %w", err)
			}
			n.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))
			if err = c.launch(n); err == nil {
				break
			}
			if attempt == 4 {
				return nil, err
			}
		}
		c.nodes = append(c.nodes, n)
	}

	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("redistest: redis-cli --cluster create: %w: %s", err, out)
	}
	if err := c.waitAllOK(clusterReadyTimeout, true); err != nil {
		return nil, err
	}
	return c, nil
}

// launch starts n's redis-server and waits until it answers PING.
func (c *Cluster) launch(n *clusterNode) error {
	n.logFile = filepath.Join(n.dir, "redis.log")
	cmd := exec.Command(c.bin,
		"--port", strconv.Itoa(n.port),
		"--cluster-port", strconv.Itoa(n.busPort),
		"--bind", "127.0.0.1",
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(n.dir, "nodes.conf"),
		"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout/time.Millisecond)),
		"--cluster-require-full-coverage", "no",
		"--cluster-replica-validity-factor", "0",
		"--repl-diskless-sync-delay", "0",
		"--save", "",
		"--appendonly", "no",
		"--dir", n.dir,
		"--daemonize", "no",
		"--loglevel", "notice",
		"--logfile", n.logFile,
	)
	DieWithParent(cmd)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	n.cmd, n.exited, n.killed = cmd, exited, false
	deadline := time.Now().Add(startTimeout)
	for ping(n.addr, false) != nil {
		select {
		case <-exited:
			return fmt.Errorf("redistest: cluster node %s exited: %s %s", n.addr, strings.TrimSpace(out.String()), clusterLogTail(n.logFile))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redistest: cluster node %s did not answer PING within %v: %s", n.addr, startTimeout, clusterLogTail(n.logFile))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func (c *Cluster) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.cmd != nil && !n.killed {
			_ = n.cmd.Process.Kill()
			<-n.exited
			n.killed = true
		}
	}
}

// Addrs returns the "127.0.0.1:PORT" addresses of all six nodes, alive or not, in start order.
// Any of them is a valid seed for a cluster client.
func (c *Cluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr
	}
	return addrs
}

// Client returns a go-redis cluster client seeded with every node, closed when the test ends. It
// reloads the slot map every 500 ms (go-redis's default is 60 s), so it finds a promoted replica
// soon after a failover.
func (c *Cluster) Client() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                      c.Addrs(),
		ClusterStateReloadInterval: 500 * time.Millisecond,
	})
	c.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Slot returns the hash slot of key, as the cluster computes it (CLUSTER KEYSLOT).
func (c *Cluster) Slot(ctx context.Context, key string) (int, error) {
	var lastErr error
	for _, addr := range c.liveAddrs() {
		slot, err := nodeCommand(ctx, addr, func(ctx context.Context, r *redis.Client) (int64, error) {
			return r.ClusterKeySlot(ctx, key).Result()
		})
		if err == nil {
			return int(slot), nil
		}
		lastErr = err
	}
	return 0, fmt.Errorf("redistest: CLUSTER KEYSLOT: %w", lastErr)
}

// MasterOf returns the address of the live master that serves slot, as the live nodes see it.
// It fails when no live node names a healthy master for slot (for example during a failover).
func (c *Cluster) MasterOf(ctx context.Context, slot int) (string, error) {
	live := c.liveAddrs()
	for _, addr := range live {
		nodes, err := clusterNodes(ctx, addr)
		if err != nil {
			continue
		}
		for _, n := range nodes {
			if n.master && !n.failing && n.serves(slot) && slices.Contains(live, n.addr) {
				return n.addr, nil
			}
		}
	}
	return "", fmt.Errorf("redistest: no live master serves slot %d", slot)
}

// KillMaster kills (SIGKILL) the master that serves key's hash slot and returns its address.
// The cluster then promotes that master's replica after about two node timeouts; WaitFailover
// waits for it.
func (c *Cluster) KillMaster(ctx context.Context, key string) (string, error) {
	slot, err := c.Slot(ctx, key)
	if err != nil {
		return "", err
	}
	addr, err := c.MasterOf(ctx, slot)
	if err != nil {
		return "", err
	}
	if err := c.Kill(addr); err != nil {
		return "", err
	}
	return addr, nil
}

// Kill kills (SIGKILL) the node at addr and waits until the process has exited.
func (c *Cluster) Kill(addr string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(addr)
	if n == nil {
		return fmt.Errorf("redistest: no cluster node %s", addr)
	}
	if n.killed {
		return nil
	}
	if err := n.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("redistest: kill %s: %w", addr, err)
	}
	<-n.exited
	n.killed = true
	return nil
}

// Restart starts again a node that Kill stopped, on the same ports and with its nodes.conf, so
// it rejoins the cluster (as a replica when its slots were failed over), and waits until every
// live node reports cluster_state:ok.
func (c *Cluster) Restart(addr string) error {
	c.mu.Lock()
	n := c.node(addr)
	if n == nil || !n.killed {
		c.mu.Unlock()
		return fmt.Errorf("redistest: no stopped cluster node %s", addr)
	}
	err := c.launch(n)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.waitAllOK(clusterReadyTimeout, false)
}

// WaitFailover waits until a live master serves key's hash slot and every live node reports
// cluster_state:ok, and returns how long it waited. It fails after timeout.
func (c *Cluster) WaitFailover(ctx context.Context, key string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	slot, err := c.Slot(ctx, key)
	if err != nil {
		return 0, err
	}
	for {
		_, err := c.MasterOf(ctx, slot)
		if err == nil {
			err = c.allOK(ctx)
		}
		if err == nil {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("redistest: slot %d not failed over within %v: %w", slot, timeout, err)
		}
		time.Sleep(clusterPollEvery)
	}
}

// waitAllOK waits until every live node reports cluster_state:ok, knows every node and sees all
// slots assigned; with synced, also until every master has one replica online (its initial
// full synchronisation done).
func (c *Cluster) waitAllOK(timeout time.Duration, synced bool) error {
	ctx, cancel := context.WithTimeout(c.t.Context(), timeout)
	defer cancel()
	for {
		err := c.allOK(ctx)
		if err == nil && synced {
			err = c.replicasOnline(ctx)
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: cluster not ready within %v: %w", timeout, err)
		case <-time.After(clusterPollEvery):
		}
	}
}

func (c *Cluster) allOK(ctx context.Context) error {
	c.mu.Lock()
	total := len(c.nodes)
	c.mu.Unlock()
	for _, addr := range c.liveAddrs() {
		info, err := nodeCommand(ctx, addr, func(ctx context.Context, r *redis.Client) (string, error) {
			return r.ClusterInfo(ctx).Result()
		})
		if err != nil {
			return fmt.Errorf("CLUSTER INFO on %s: %w", addr, err)
		}
		for _, want := range []string{
			"cluster_state:ok",
			"cluster_slots_assigned:16384",
			"cluster_known_nodes:" + strconv.Itoa(total),
		} {
			if !strings.Contains(info, want+"\r\n") {
				return fmt.Errorf("node %s: CLUSTER INFO lacks %q", addr, want)
			}
		}
	}
	return nil
}

// replicasOnline checks that every master reports one online replica.
func (c *Cluster) replicasOnline(ctx context.Context) error {
	for _, addr := range c.liveAddrs() {
		info, err := nodeCommand(ctx, addr, func(ctx context.Context, r *redis.Client) (string, error) {
			return r.Info(ctx, "replication").Result()
		})
		if err != nil {
			return fmt.Errorf("INFO replication on %s: %w", addr, err)
		}
		if strings.Contains(info, "role:master") &&
			!(strings.Contains(info, "connected_slaves:1\r\n") && strings.Contains(info, "state=online")) {
			return fmt.Errorf("master %s has no online replica yet", addr)
		}
	}
	return nil
}

// liveAddrs returns the addresses of the nodes that are not killed.
func (c *Cluster) liveAddrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var addrs []string
	for _, n := range c.nodes {
		if !n.killed {
			addrs = append(addrs, n.addr)
		}
	}
	return addrs
}

// node returns the node at addr; c.mu must be held.
func (c *Cluster) node(addr string) *clusterNode {
	for _, n := range c.nodes {
		if n.addr == addr {
			return n
		}
	}
	return nil
}

// nodeCommand runs one command on a single node through a short-lived client.
func nodeCommand[T any](ctx context.Context, addr string, f func(context.Context, *redis.Client) (T, error)) (T, error) {
	r := redis.NewClient(&redis.Options{
		Addr:         addr,
		DialTimeout:  500 * time.Millisecond,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
		MaxRetries:   -1,
		PoolSize:     1,
	})
	defer r.Close()
	return f(ctx, r)
}

// clusterNodeInfo is one line of CLUSTER NODES.
type clusterNodeInfo struct {
	addr    string
	master  bool
	failing bool
	slots   [][2]int
}

func (n clusterNodeInfo) serves(slot int) bool {
	for _, r := range n.slots {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// clusterNodes parses CLUSTER NODES as seen by the node at addr. A line reads
// "<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot>...".
func clusterNodes(ctx context.Context, addr string) ([]clusterNodeInfo, error) {
	text, err := nodeCommand(ctx, addr, func(ctx context.Context, r *redis.Client) (string, error) {
		return r.ClusterNodes(ctx).Result()
	})
	if err != nil {
		return nil, err
	}
	var nodes []clusterNodeInfo
	for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := clusterNodeInfo{addr: f[1]}
		if i := strings.IndexAny(n.addr, "@,"); i >= 0 {
			n.addr = n.addr[:i]
		}
		for flag := range strings.SplitSeq(f[2], ",") {
			switch flag {
			case "master":
				n.master = true
			case "fail", "fail?", "noaddr", "handshake":
				n.failing = true
			}
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") { // a slot being migrated or imported
				continue
			}
			lo, hi, found := strings.Cut(s, "-")
			if !found {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("CLUSTER NODES slot %q: %w", s, err)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// clusterLogTail returns the last lines of a log file, for error messages.
func clusterLogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
