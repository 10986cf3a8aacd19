package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/featurestore"
)

func TestReadRedisPassword(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("s3cr:et@/x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	envWith := func(v string) func(string) string {
		return func(k string) string {
			if k == redisPasswordEnv {
				return v
			}
			return ""
		}
	}
	if pw, err := readRedisPassword(file, envWith("")); err != nil || pw != "s3cr:et@/x" {
		t.Errorf("readRedisPassword(file) = %q, %v, want the file's content without the newline", pw, err)
	}
	if pw, err := readRedisPassword("", envWith("from-env")); err != nil || pw != "from-env" {
		t.Errorf("readRedisPassword(env) = %q, %v, want from-env", pw, err)
	}
	if pw, err := readRedisPassword("", envWith("")); err != nil || pw != "" {
		t.Errorf("readRedisPassword(nothing) = %q, %v, want none", pw, err)
	}
	for name, f := range map[string]func() (string, error){
		"both":    func() (string, error) { return readRedisPassword(file, envWith("x")) },
		"empty":   func() (string, error) { return readRedisPassword(empty, envWith("")) },
		"missing": func() (string, error) { return readRedisPassword(filepath.Join(dir, "nope"), envWith("")) },
	} {
		if _, err := f(); err == nil {
			t.Errorf("readRedisPassword(%s) = nil error, want an error", name)
		}
	}
}

// TestWithRedisPassword adds an awkward password to every form of Redis address and checks
// that the client gets it back intact, and that redactURL hides it.
func TestWithRedisPassword(t *testing.T) {
	const pw = "p@ss:w/rd%?#&+ ü"
	for _, raw := range []string{
		"127.0.0.1:6379", "redis://127.0.0.1:6379/2", "rediss://cache.internal:6380", "redis://alice@127.0.0.1:6379",
		"127.0.0.1:7000,127.0.0.1:7001", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "redis+cluster://bob@127.0.0.1:7000",
	} {
		got, err := withRedisPassword(raw, pw)
		if err != nil {
			t.Errorf("withRedisPassword(%q) = %v", raw, err)
			continue
		}
		client, err := featurestore.Dial(got)
		if err != nil {
			t.Errorf("featurestore.Dial(withRedisPassword(%q)) = %v", raw, err)
			continue
		}
		var gotPw, gotUser string
		switch c := client.(type) {
		case *redis.Client:
			gotPw, gotUser = c.Options().Password, c.Options().Username
		case *redis.ClusterClient:
			gotPw, gotUser = c.Options().Password, c.Options().Username
		}
		client.Close()
		wantUser := ""
		if strings.Contains(raw, "alice@") {
			wantUser = "alice"
		} else if strings.Contains(raw, "bob@") {
			wantUser = "bob"
		}
		if gotPw != pw || gotUser != wantUser {
			t.Errorf("withRedisPassword(%q) = %q: client has user %q password %q, want %q %q", raw, got, gotUser, gotPw, wantUser, pw)
		}
		if urlPassword(got) != pw {
			t.Errorf("urlPassword(%q) = %q, want %q", got, urlPassword(got), pw)
		}
		if r := redactURL(got); strings.Contains(r, escapeUserinfo(pw)) || !strings.Contains(r, ":xxxxx@") {
			t.Errorf("redactURL(%q) = %q, want the password replaced", got, r)
		}
	}
	if _, err := withRedisPassword("redis://:inline@127.0.0.1:6379", pw); err == nil {
		t.Errorf("withRedisPassword(URL with a password) = nil error, want an error: the password is given twice")
	}
	if _, err := withRedisPassword("", pw); err == nil {
		t.Errorf("withRedisPassword(no URL) = nil error, want an error")
	}
}

func TestRedactError(t *testing.T) {
	const pw = "hunter2!"
	base := errors.New(`parse "redis://:hunter2%21@h:x": invalid port; also hunter2! and hunter2%21`)
	err := redactError(base, pw)
	if strings.Contains(err.Error(), "hunter2") || !errors.Is(err, base) {
		t.Errorf("redactError() = %q (Is base %v), want the password gone and the error wrapped", err, errors.Is(err, base))
	}
	if redactError(nil, pw) != nil || redactError(base, "") != base {
		t.Errorf("redactError(nil or no secret) changed its error")
	}
	// A URL featurestore.Dial cannot parse: its error prints the URL.
	bad := "redis://:hunter2@127.0.0.1:notaport"
	_, err = featurestore.Dial(bad)
	if err == nil || !strings.Contains(err.Error(), "hunter2") {
		t.Skipf("featurestore.Dial(%q) = %v: no longer shows the password, nothing to redact", bad, err)
	}
	if err := redactError(err, urlPassword(bad)); strings.Contains(err.Error(), "hunter2") {
		t.Errorf("redactError(Dial error) = %q, want it without the password", err)
	}
}

// TestRedisSinkErrorRedacted: a Redis that does not answer is reported with its address, not
// its password.
func TestRedisSinkErrorRedacted(t *testing.T) {
	_, _, err := redisSink(t.Context(), "redis://:hunter2@127.0.0.1:1")
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("redisSink(unreachable) = %v, want an error naming the address without the password", err)
	}
}
