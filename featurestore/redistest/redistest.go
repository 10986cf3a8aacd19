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
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
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
		addr, err := launch(t, bin, dir, port, extra)
		if err == nil {
			return addr, nil
		}
		lastErr = err
	}
	return "", lastErr
}

func launch(t testing.TB, bin, dir string, port int, extra []string) (string, error) {
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
		if ping(addr) == nil {
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

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
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
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}
