package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serverDownError is a call that failed because nothing answers at the server's address.
type serverDownError struct {
	addr  string
	cause error // the dial's error
}

func (e *serverDownError) Error() string {
	return fmt.Sprintf("no Arbiter server answers at %s (%v); start one with \"make run\" or \"arbiter serve\", or point --addr at a running one",
		e.addr, e.cause)
}

func (e *serverDownError) Unwrap() error { return e.cause }

// notFoundError is a NotFound answer, with what the command asked for.
type notFoundError struct {
	what  string // `policy version "2026.1"`
	cause error  // the status error
}

func (e *notFoundError) Error() string { return e.what + " not found" }

func (e *notFoundError) Unwrap() error { return e.cause }

// callError turns the error of a call to the server at addr into one a person can act on.
// When the call could not reach the server (Unavailable or DeadlineExceeded) and a TCP
// connection to addr fails too, it is a *serverDownError saying so and how to start one; a
// failed TLS handshake or an overloaded server is left as it is, since something answers. A
// NotFound answer becomes "<what> not found" when what (the id asked for, as
// `policy version "2026.1"`) is not empty. Other errors are returned unchanged.
func callError(ctx context.Context, addr, what string, err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		if _, _, splitErr := net.SplitHostPort(addr); splitErr != nil {
			return err // a resolver target ("dns:///...", "unix:..."): not probed
		}
		// The call's own context may be the one that expired.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		var d net.Dialer
		c, dialErr := d.DialContext(pctx, "tcp", addr)
		if dialErr != nil {
			return &serverDownError{addr: addr, cause: dialErr}
		}
		c.Close()
	case codes.NotFound:
		if what != "" {
			return &notFoundError{what: what, cause: err}
		}
	}
	return err
}

// isServerDown reports whether err is a server that could not be reached.
func isServerDown(err error) bool {
	var sd *serverDownError
	return errors.As(err, &sd)
}
