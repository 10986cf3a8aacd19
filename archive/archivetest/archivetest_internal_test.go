package archivetest

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		server, want string
	}{
		{DefaultServer, "postgres://postgres@127.0.0.1:5432/arbiter_test_x?sslmode=disable"},
		{"postgresql://u:p%40ss@db:6543", "postgresql://u:p%40ss@db:6543/arbiter_test_x"},
		{"host=127.0.0.1 user=postgres dbname=postgres", "host=127.0.0.1 user=postgres dbname=postgres dbname=arbiter_test_x"},
	}
	for _, tt := range tests {
		got, err := withDatabase(tt.server, "arbiter_test_x")
		if err != nil || got != tt.want {
			t.Errorf("withDatabase(%q) = %q, %v, want %q", tt.server, got, err, tt.want)
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil || cfg.Database != "arbiter_test_x" {
			t.Errorf("pgx.ParseConfig(%q) database = %v, want arbiter_test_x", got, err)
		}
	}
}

func TestNewDB(t *testing.T) {
	var name string
	t.Run("create", func(t *testing.T) {
		dsn := NewDB(t)
		conn, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatalf("connect to NewDB's database: %v", err)
		}
		// An open connection does not keep the database from being dropped.
		if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatalf("current_database() = %v", err)
		}
	})
	conn, err := pgx.Connect(t.Context(), Server())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(t.Context())
	rows, _ := conn.Query(t.Context(), "SELECT datname FROM pg_database WHERE datname = $1", name)
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("databases named %q after the test ended = %v, want none: NewDB's cleanup drops it", name, left)
	}
}
