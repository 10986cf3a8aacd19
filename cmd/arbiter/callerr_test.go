package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestCallError(t *testing.T) {
	down := closedAddr(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	up := lis.Addr().String()
	unavailable := fmt.Errorf("decide: %w", status.Error(codes.Unavailable, "connection error: connection refused"))
	notFound := status.Error(codes.NotFound, "policy version not found")
	tests := []struct {
		name, addr, what string
		err              error
		want             string // the whole message; empty: the error unchanged
		down             bool
	}{
		{name: "nothing listens", addr: down, err: unavailable, down: true,
			want: fmt.Sprintf(`no Arbiter server answers at %s (dial tcp %s: connect: connection refused); start one with "make run" or "arbiter serve", or point --addr at a running one`, down, down)},
		{name: "deadline and nothing listens", addr: down, err: status.Error(codes.DeadlineExceeded, "context deadline exceeded"), down: true,
			want: "no Arbiter server answers at " + down},
		// Something answers: a TLS mismatch or an overload is not a server that is down.
		{name: "something listens", addr: up, err: unavailable},
		{name: "resolver target", addr: "dns:///arbiter.internal:50051", err: unavailable},
		{name: "not found names the id", addr: up, what: `policy version "2026.1"`, err: notFound, want: `policy version "2026.1" not found`},
		{name: "not found without an id", addr: up, err: notFound},
		{name: "other code", addr: down, err: status.Error(codes.PermissionDenied, "admin role required")},
		{name: "no error", addr: down},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := callError(context.Background(), tc.addr, tc.what, tc.err)
			if tc.want == "" {
				if got != tc.err {
					t.Errorf("callError(%s, %v) = %v, want the error unchanged", tc.addr, tc.err, got)
				}
				return
			}
			if got == nil || !strings.HasPrefix(got.Error(), tc.want) {
				t.Errorf("callError(%s, %v) = %v, want %q", tc.addr, tc.err, got, tc.want)
			}
			if isServerDown(got) != tc.down {
				t.Errorf("isServerDown(callError(%s, %v)) = %v, want %v", tc.addr, tc.err, !tc.down, tc.down)
			}
			if !errors.Is(got, tc.err) && !tc.down {
				t.Errorf("callError(%s, %v) = %v, want it to wrap the status error", tc.addr, tc.err, got)
			}
		})
	}
}
