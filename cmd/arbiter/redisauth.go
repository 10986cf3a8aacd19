package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// redisPasswordEnv is the environment variable that holds the Redis password of "arbiter
// serve". It is read directly, not as a flag: a --redis-password flag would put the password
// on the command line, where every local user can read it (ps, /proc/PID/cmdline).
const redisPasswordEnv = "ARBITER_REDIS_PASSWORD"

// readRedisPassword returns the Redis password from file (--redis-password-file: its content,
// without a final newline) or from ARBITER_REDIS_PASSWORD; "" when neither is set. Both set,
// an unreadable file or an empty one are errors.
func readRedisPassword(file string, env func(string) string) (string, error) {
	fromEnv := env(redisPasswordEnv)
	switch {
	case file != "" && fromEnv != "":
		return "", fmt.Errorf("both --redis-password-file and %s are set: give the Redis password once", redisPasswordEnv)
	case file == "":
		return fromEnv, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--redis-password-file: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pw == "" {
		return "", fmt.Errorf("--redis-password-file %s is empty", file)
	}
	return pw, nil
}

// withRedisPassword returns rawURL, any form featurestore.Dial takes, carrying password. The
// URL must not hold a password itself. The result holds the secret: never log or print it
// (redactURL).
func withRedisPassword(rawURL, password string) (string, error) {
	if rawURL == "" {
		return "", errors.New("a Redis password is set but --redis is empty")
	}
	if urlPassword(rawURL) != "" {
		return "", errors.New("the Redis password is given twice: in --redis and in --redis-password-file or " + redisPasswordEnv)
	}
	pw := escapeUserinfo(password)
	scheme, rest, hasScheme := strings.Cut(rawURL, "://")
	switch {
	case !hasScheme && strings.Contains(rawURL, ","):
		return "redis+cluster://:" + pw + "@" + rawURL, nil
	case !hasScheme:
		return "redis://:" + pw + "@" + rawURL, nil
	}
	user := ""
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		user, rest = rest[:i], rest[i+1:]
	}
	return scheme + "://" + user + ":" + pw + "@" + rest, nil
}

// escapeUserinfo percent-encodes every byte of s but letters, digits and -._~, which both
// url.Parse (redis://) and featurestore's cluster URLs decode.
func escapeUserinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// urlPassword returns the password a Redis URL holds, decoded; "" when none.
func urlPassword(rawURL string) string {
	_, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return ""
	}
	i := strings.LastIndex(rest, "@")
	if i < 0 {
		return ""
	}
	_, pw, ok := strings.Cut(rest[:i], ":")
	if !ok {
		return ""
	}
	if dec, err := url.PathUnescape(pw); err == nil {
		return dec
	}
	return pw
}

// redactURL returns rawURL with its password, if any, replaced by "xxxxx": the form to log or
// show.
func redactURL(rawURL string) string {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return rawURL
	}
	i := strings.LastIndex(rest, "@")
	if i < 0 {
		return rawURL
	}
	user, _, hasPw := strings.Cut(rest[:i], ":")
	if !hasPw {
		return rawURL
	}
	return scheme + "://" + user + ":xxxxx@" + rest[i+1:]
}

// redactError returns err with every occurrence of secret (plain or percent-encoded) in its
// message replaced by "xxxxx"; err itself when secret is empty.
func redactError(err error, secret string) error {
	if err == nil || secret == "" {
		return err
	}
	return redactedError{err: err, secrets: []string{secret, escapeUserinfo(secret), url.QueryEscape(secret), url.PathEscape(secret)}}
}

type redactedError struct {
	err     error
	secrets []string
}

func (e redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}

func (e redactedError) Unwrap() error { return e.err }
