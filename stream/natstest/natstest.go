// Package natstest starts a real, throw-away nats-server with JetStream for tests.
//
// Tests of the streaming edge run against a real server, never a mock: Start launches
// /usr/sbin/nats-server (or whichever nats-server is on PATH) with JetStream on a free loopback
// port and a temporary store directory, waits until it accepts connections, and stops it when
// the test ends. `make test` installs the Debian package nats-server when it is missing. A
// nats-server that other programs run on the machine (127.0.0.1:4222) is never used.
package natstest

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds how long Start waits for the server to accept connections.
const startTimeout = 10 * time.Second

// Start starts a nats-server with JetStream on a free loopback port and returns its URL,
// "nats://127.0.0.1:PORT". The server is killed and its store removed in t.Cleanup. Start
// calls t.Fatal when nats-server is not installed or does not come up; it never skips.
func Start(t testing.TB) string {
	t.Helper()
	return StartServer(t).URL()
}

// Server is a running nats-server that a test can kill and start again, on the same port and
// JetStream store.
type Server struct {
	t      testing.TB
	bin    string
	dir    string
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartServer is Start, returning the server for Kill and Restart.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin, err := lookPath()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	// A free port can be taken between our probe and the server's bind; try a few times.
	var lastErr error
	for range 5 {
		if s.port, err = freePort(); err != nil {
			t.Fatalf("natstest: find a free port: %v", err)
		}
		if lastErr = s.launch(); lastErr == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatal(lastErr)
	return nil
}

// URL is the server's client URL, "nats://127.0.0.1:PORT".
func (s *Server) URL() string { return "nats://" + s.addr() }

func (s *Server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Kill kills the server (SIGKILL) and waits until it has exited. Killing a dead server does
// nothing.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart starts the killed server again on the same port and store; it calls t.Fatal when the
// server does not come up.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.launch(); err != nil {
		s.t.Fatal(err)
	}
}

func lookPath() (string, error) {
	if bin, err := exec.LookPath("nats-server"); err == nil {
		return bin, nil
	}
	const debian = "/usr/sbin/nats-server" // not on a non-root PATH
	if bin, err := exec.LookPath(debian); err == nil {
		return bin, nil
	}
	return "", fmt.Errorf("natstest: nats-server is not installed (run `make test`, which installs the Debian package nats-server)")
}

func (s *Server) launch() error {
	cmd := exec.Command(s.bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-sd", s.dir)
	dieWithParent(cmd)
	var out syncBuffer // written by exec's copying goroutine while launch reads it
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("natstest: start nats-server: %w", err)
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
	addr := s.addr()
	deadline := time.Now().Add(startTimeout)
	for {
		// The server logs "Server is ready" once clients can connect and JetStream is up.
		if strings.Contains(out.String(), "Server is ready") {
			if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
				c.Close()
				s.cmd, s.exited = cmd, exited
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("natstest: nats-server on %s exited: %s", addr, strings.TrimSpace(out.String()))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("natstest: nats-server on %s not ready within %v: %s", addr, startTimeout, strings.TrimSpace(out.String()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
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
