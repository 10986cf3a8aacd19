// Package archivetest gives each test its own PostgreSQL database for the archive: a real
// server, never a mock.
//
// The server is the one named by ARBITER_TEST_POSTGRES, by default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable (user postgres, trust
// authentication). `make postgres`, which `make test` runs first, starts a throwaway one there
// when none answers.
package archivetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvServer is the environment variable that names the PostgreSQL server the tests use, as a
// connection string for a database the user may connect to (the databases are created there).
const EnvServer = "ARBITER_TEST_POSTGRES"

// DefaultServer is the server used when EnvServer is unset or empty.
const DefaultServer = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// adminTimeout bounds connecting, creating and dropping a database.
const adminTimeout = 30 * time.Second

// Server returns the connection string of the test server: EnvServer's value, or
// DefaultServer.
func Server() string {
	if s := os.Getenv(EnvServer); s != "" {
		return s
	}
	return DefaultServer
}

// NewDB creates an empty database with a unique name on the test server and returns its
// connection string; the database is dropped, with any connections still open to it, when the
// test ends. It calls t.Fatal when no server answers: the archive's tests need one and never
// skip.
func NewDB(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), adminTimeout)
	defer cancel()
	dsn, drop, err := CreateDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// t.Context is already done when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		if err := drop(ctx); err != nil {
			t.Errorf("archivetest: %v", err)
		}
	})
	return dsn
}

// CreateDB is NewDB for code without a testing.TB, such as TestMain for runnable examples: it
// creates the database and returns its connection string and a function that drops it.
func CreateDB(ctx context.Context) (dsn string, drop func(context.Context) error, err error) {
	server := Server()
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "arbiter_test_" + hex.EncodeToString(b[:])
	dsn, err = withDatabase(server, name)
	if err != nil {
		return "", nil, err
	}
	admin, err := connect(ctx, server)
	if err != nil {
		return "", nil, err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("archivetest: create database %s: %w", name, err)
	}
	drop = func(ctx context.Context) error {
		admin, err := connect(ctx, server)
		if err != nil {
			return err
		}
		defer admin.Close(context.WithoutCancel(ctx))
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("archivetest: drop database %s: %w", name, err)
		}
		return nil
	}
	return dsn, drop, nil
}

// connect opens one connection to server, with an error that says how to get one when none
// answers.
func connect(ctx context.Context, server string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(server)
	if err != nil {
		return nil, fmt.Errorf("archivetest: %s: %w", EnvServer, err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("archivetest: no PostgreSQL answers at %s:%d as user %s (run `make postgres`, or set %s): %w",
			cfg.Host, cfg.Port, cfg.User, EnvServer, err)
	}
	return conn, nil
}

// withDatabase returns the connection string server with its database replaced by name.
func withDatabase(server, name string) (string, error) {
	if strings.HasPrefix(server, "postgres://") || strings.HasPrefix(server, "postgresql://") {
		u, err := url.Parse(server)
		if err != nil {
			return "", fmt.Errorf("archivetest: %s: %w", EnvServer, err)
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	// key=value form: a later keyword overrides an earlier one.
	return server + " dbname=" + name, nil
}
