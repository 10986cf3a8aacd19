package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotFound is returned by Get when the archive holds no decision with the id.
var ErrNotFound = errors.New("archive: not found")

// ErrUnavailable wraps every error that means PostgreSQL could not be reached, did not answer
// in time, or cannot take writes now (shutting down, in recovery, out of connections or disk,
// a lock or statement timeout, a serialization failure). Nothing was written: a caller keeps
// what it meant to archive (the Redis outbox) and retries.
var ErrUnavailable = errors.New("archive: unavailable")

// ErrInvalid wraps errors about arguments the archive refuses to store: an empty id, a zero
// time, text that is not valid UTF-8 or holds a NUL byte, a detail that is not JSON. The
// server produces what is archived, so it means a bug in the caller; retrying cannot help.
var ErrInvalid = errors.New("archive: invalid argument")

// dbErr wraps err from PostgreSQL for op, adding ErrUnavailable when the failure is one a
// retry can cure.
func dbErr(op string, err error) error {
	if unavailable(err) {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// unavailable reports whether err means that PostgreSQL could not do the work now rather
// than that the work was wrong.
func unavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"53", // insufficient resources: disk full, out of memory, too many connections
			"57", // operator intervention: shutdown, cannot connect now, query canceled
			"40", // transaction rollback: serialization failure, deadlock
			"58": // system error: I/O error
			return true
		}
		switch pgErr.Code {
		case "55P03", // lock_not_available: lock_timeout
			"25006": // read_only_sql_transaction: a standby after a failover
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		pgconn.Timeout(err) || errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errClosed)
}

// errClosed is the cause of errors from an Archive after Close.
var errClosed = errors.New("archive closed")
