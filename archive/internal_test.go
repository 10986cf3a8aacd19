package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestUnavailableClassification(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("exec: %w", &pgconn.PgError{Code: code}) }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), true},
		{"canceled", context.Canceled, true},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"server closed the connection", fmt.Errorf("receive: %w", io.ErrUnexpectedEOF), true},
		{"conn closed", fmt.Errorf("exec: %w", pgconn.ErrConnClosed), true},
		{"admin shutdown 57P01", pg("57P01"), true},
		{"cannot connect now 57P03", pg("57P03"), true},
		{"too many connections 53300", pg("53300"), true},
		{"disk full 53100", pg("53100"), true},
		{"serialization failure 40001", pg("40001"), true},
		{"lock timeout 55P03", pg("55P03"), true},
		{"read-only standby 25006", pg("25006"), true},
		{"connection failure 08006", pg("08006"), true},
		{"syntax error 42601", pg("42601"), false},
		{"no partition 23514", pg("23514"), false},
		{"undefined table 42P01", pg("42P01"), false},
		{"other", errors.New("boom"), false},
	}
	for _, tt := range tests {
		if got := unavailable(tt.err); got != tt.want {
			t.Errorf("unavailable(%s) = %v, want %v", tt.name, got, tt.want)
		}
		if got := errors.Is(dbErr("op", tt.err), ErrUnavailable); got != tt.want {
			t.Errorf("errors.Is(dbErr(%s), ErrUnavailable) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestDayOf(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC), "decisions_20261204"},
		{time.Date(2026, 12, 4, 23, 59, 59, 999_999_999, time.UTC), "decisions_20261204"},
		// 00:30 in Paris is 23:30 UTC the day before: partitions are UTC days.
		{time.Date(2026, 12, 5, 0, 30, 0, 0, time.FixedZone("CET", 3600)), "decisions_20261204"},
		{time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC), "decisions_20240229"},
		{time.Unix(0, 0), "decisions_19700101"},
		{time.Unix(-1, 0), "decisions_19691231"},
		{time.Unix(-86400, 0), "decisions_19691231"},
	}
	for _, tt := range tests {
		d := dayOf(tt.t)
		if got := partitionName(d); got != tt.want {
			t.Errorf("partitionName(dayOf(%v)) = %s, want %s", tt.t, got, tt.want)
		}
		if s := dayStart(d); s.After(tt.t) || !tt.t.Before(s.Add(day)) {
			t.Errorf("dayStart(dayOf(%v)) = %v, want the start of the UTC day that holds it", tt.t, s)
		}
	}
}

func TestMigrations(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatalf("migrations() = %v", err)
	}
	for i, m := range ms {
		if m.version != i+1 {
			t.Errorf("migration %d is %s, want version %d: versions run 1, 2, 3... without gaps", i, m.name, i+1)
		}
	}
}
