// Package redistest starts a real, throw-away redis-server for tests.
//
// Tests that involve stored state run against a real Redis, never a mock: Start launches
// /usr/bin/redis-server (or whichever redis-server is on PATH) on a free loopback port, with no
// persistence and a temporary working directory, waits until it answers PING, and stops it when
// the test ends. `make test` installs the Debian package redis-server when it is missing.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long Start waits for the server to answer PING.
const startTimeout = 10 * time.Second

// Start starts a redis-server on a free loopback port and returns its address,
// "127.0.0.1:PORT". The server is killed and its files removed in t.Cleanup. Start calls
// t.Fatal when redis-server is not installed or does not come up; it never skips.
func Start(t testing.TB) string {
	t.Helper()
	addr, err := start(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// StartWithArgs is Start with extra redis-server arguments, for example
// []string{"--maxmemory", "10mb"}.
func StartWithArgs(t testing.TB, args ...string) string {
	t.Helper()
	addr, err := start(t, args)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func start(t testing.TB, extra []string) (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redistest: redis-server is not installed (run `make test`, which installs the Debian package redis-server): %w", err)
	}
	dir := t.TempDir()
	// A free port can be taken between our probe and the server's bind; try a few times.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return "", fmt.Errorf("redistest: find a free port: %w", err)
		}
		addr, err := launch(t, bin, dir, port, extra, false)
		if err == nil {
			return addr, nil
		}
		lastErr = err
	}
	return "", lastErr
}

// launch starts redis-server and waits until it answers PING; with loading, a LOADING reply
// counts as an answer.
func launch(t testing.TB, bin, dir string, port int, extra []string, loading bool) (string, error) {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
		"--loglevel", "warning",
	}
	args = append(args, extra...)
	cmd := exec.Command(bin, args...)
	DieWithParent(cmd)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("redistest: start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startTimeout)
	for {
		if ping(addr, loading) == nil {
			t.Cleanup(stop)
			return addr, nil
		}
		select {
		case <-exited:
			return "", fmt.Errorf("redistest: redis-server on %s exited: %s", addr, strings.TrimSpace(out.String()))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("redistest: redis-server on %s did not answer PING within %v: %s", addr, startTimeout, strings.TrimSpace(out.String()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping sends an inline PING and expects +PONG, or -LOADING with loading.
func ping(addr string, loading bool) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !(loading && strings.HasPrefix(line, "-LOADING")) {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// StartLoading starts a redis-server that answers LOADING for a while, as a restarted Redis
// does while it reads its data back from disk: its dump holds keys keys, and it spends perKey
// on each (redis-server's key-load-delay) while answering other clients between keys. It
// returns the address as soon as the server answers, LOADING included; the loading lasts at
// least keys×perKey.
func StartLoading(t testing.TB, keys int, perKey time.Duration) string {
	t.Helper()
	dir := t.TempDir()
	seed, err := start(t, []string{"--dir", dir})
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: seed})
	defer c.Close()
	ctx := context.Background()
	fill := "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'redistest:' .. i, i) end"
	if err := c.Eval(ctx, fill, nil, keys).Err(); err != nil && err != redis.Nil {
		t.Fatalf("redistest: fill the dump: %v", err)
	}
	if err := c.Save(ctx).Err(); err != nil {
		t.Fatalf("redistest: save the dump: %v", err)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := launch(t, bin, dir, port, []string{
		"--key-load-delay", strconv.Itoa(int(perKey.Microseconds())),
		"--loading-process-events-interval-bytes", "1024",
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
