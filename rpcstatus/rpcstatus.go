// Package rpcstatus turns Arbiter's errors into gRPC statuses, in one place: Convert. The
// services, interceptors and stores return ordinary error values (a *FieldError for bad input,
// the stores' sentinel errors, the errors made here for refusals); Convert chooses the code and
// the public message. Messages name fields and kinds of failure, never internals or customer
// data, and every INVALID_ARGUMENT reads "invalid FIELD: PROBLEM".
package rpcstatus

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/policystore"
)

// FieldError is a request field that is missing or invalid. It becomes INVALID_ARGUMENT with
// the message "invalid FIELD: PROBLEM", which never holds the value.
type FieldError struct {
	Field   string // for example "event.payment.currency"
	Problem string // for example "must be 3 upper-case letters (ISO 4217)"
}

// Invalid returns a *FieldError for field.
func Invalid(field, problem string) error { return &FieldError{Field: field, Problem: problem} }

// Error returns "FIELD: PROBLEM".
func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// GRPCStatus makes status.Code and status.FromError see what Convert makes of e.
func (e *FieldError) GRPCStatus() *status.Status {
	return status.New(codes.InvalidArgument, "invalid "+e.Error())
}

// Error is a refusal whose code and public message the caller chose, such as a missing token
// or a full server. Make one with the constructors below.
type Error struct {
	st *status.Status // built once, so a sentinel refusal costs no allocation when returned
}

func newError(code codes.Code, msg string, retryAfter time.Duration) *Error {
	st := status.New(code, msg)
	if retryAfter > 0 {
		if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)}); err == nil {
			st = d
		}
	}
	return &Error{st: st}
}

// Error returns the public message.
func (e *Error) Error() string { return e.st.Message() }

// GRPCStatus makes status.Code and status.FromError see what Convert makes of e. A refusal
// with a retry delay carries it as a google.rpc.RetryInfo detail (the retry pushback).
func (e *Error) GRPCStatus() *status.Status { return e.st }

// Unauthenticated is a call without valid credentials.
func Unauthenticated(msg string) error { return newError(codes.Unauthenticated, msg, 0) }

// PermissionDenied is an authenticated caller that lacks the role for a call.
func PermissionDenied(msg string) error { return newError(codes.PermissionDenied, msg, 0) }

// ResourceExhausted is a call refused for load or a limit; retryAfter, when positive, is the
// delay the caller should wait before it tries again.
func ResourceExhausted(msg string, retryAfter time.Duration) error {
	return newError(codes.ResourceExhausted, msg, retryAfter)
}

// Unavailable is a call the service cannot serve now; the caller retries with back-off.
func Unavailable(msg string) error { return newError(codes.Unavailable, msg, 0) }

// FailedPrecondition is a call refused because of the state of the system, such as a policy
// version that is already active.
func FailedPrecondition(msg string) error { return newError(codes.FailedPrecondition, msg, 0) }

// AlreadyExists is a create of something that exists with other content.
func AlreadyExists(msg string) error { return newError(codes.AlreadyExists, msg, 0) }

// NotFound is a lookup of what, by id, that found nothing: `decision "d-1" not found`. The id
// is the caller's own, so it may be echoed.
func NotFound(what, id string) error {
	return newError(codes.NotFound, what+" "+strconv.Quote(id)+" not found", 0)
}

// Sentinel errors of the server, mapped by Convert.
var (
	// ErrNoPolicy means no policy is loaded yet: UNAVAILABLE.
	ErrNoPolicy = errors.New("no policy loaded")
	// ErrDraining means the server is shutting down: UNAVAILABLE.
	ErrDraining = errors.New("server is shutting down")
	// ErrNotRecorded means a degraded decision could not be recorded, so it is not answered:
	// UNAVAILABLE.
	ErrNotRecorded = errors.New("store unavailable and the decision could not be recorded")
)

// Convert returns the gRPC status error for err, an error returned by method (a full gRPC
// method name, for the log): nil for nil. It is the only place that chooses codes and
// messages. Errors that are the server's or the store's fault are logged to logger, once,
// with their internal detail; the caller gets a message without it.
func Convert(ctx context.Context, logger *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	code, msg, level := classify(err)
	if level >= slog.LevelWarn && logger != nil {
		logger.LogAttrs(ctx, level, msg, slog.String("method", method), slog.Any("err", err))
	}
	var e *Error
	if errors.As(err, &e) {
		return e.GRPCStatus().Err()
	}
	return status.Error(code, msg)
}

// classify returns err's code, its public message and the level at which it is logged
// (below slog.LevelWarn: not logged, the caller's own mistake or choice).
func classify(err error) (codes.Code, string, slog.Level) {
	const quiet = slog.LevelDebug
	var fe *FieldError
	var e *Error
	var se interface{ GRPCStatus() *status.Status }
	switch {
	case errors.As(err, &fe):
		return codes.InvalidArgument, "invalid " + fe.Error(), quiet
	case errors.As(err, &e):
		return e.st.Code(), e.st.Message(), quiet
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, "deadline exceeded", quiet
	case errors.Is(err, context.Canceled):
		return codes.Canceled, "call canceled", quiet
	case errors.As(err, &se):
		// A status made by a library (gRPC itself): already a status.
		st := se.GRPCStatus()
		return st.Code(), st.Message(), quiet
	case errors.Is(err, ErrNoPolicy):
		return codes.Unavailable, "no policy loaded", quiet
	case errors.Is(err, ErrDraining):
		return codes.Unavailable, "server is shutting down", quiet
	case errors.Is(err, ErrNotRecorded):
		return codes.Unavailable, "store unavailable and the decision could not be recorded; retry with back-off", slog.LevelError
	case errors.Is(err, featurestore.ErrNotFound):
		return codes.NotFound, "not found", quiet
	case errors.Is(err, policystore.ErrNotFound):
		return codes.NotFound, "policy version not found", quiet
	case errors.Is(err, featurestore.ErrUnavailable):
		return codes.Unavailable, "store unavailable; retry with back-off", slog.LevelWarn
	case errors.Is(err, policystore.ErrUnavailable):
		return codes.Unavailable, "policy store unavailable; retry with back-off", slog.LevelWarn
	case errors.Is(err, featurestore.ErrInvalid):
		return codes.InvalidArgument, "invalid request: refused by the store", slog.LevelError
	case errors.Is(err, featurestore.ErrCorrupt):
		return codes.DataLoss, "stored data is malformed", slog.LevelError
	case errors.Is(err, archive.ErrNotFound):
		return codes.NotFound, "not found", quiet
	case errors.Is(err, archive.ErrUnavailable):
		return codes.Unavailable, "decision archive unavailable; retry with back-off", slog.LevelWarn
	case errors.Is(err, policystore.ErrCorrupt):
		return codes.DataLoss, "stored policy data is malformed", slog.LevelError
	}
	return codes.Internal, "internal error", slog.LevelError
}
