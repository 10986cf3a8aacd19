package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/arbiter-dev/arbiter/featurestore"
)

var (
	// errNoPolicy means no policy is loaded yet.
	errNoPolicy = errors.New("no policy loaded")
	// errDraining means the server is shutting down.
	errDraining = errors.New("server is draining")
)

// toStatus turns an error of an RPC into its gRPC status. It is the only place that does:
// statuses name fields and kinds of failure, never internals or customer data. Errors that
// are the server's fault are logged here, once.
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	var fe *FieldError
	var se interface{ GRPCStatus() *status.Status }
	switch {
	case errors.As(err, &fe):
		return status.Error(codes.InvalidArgument, "invalid "+fe.Error())
	case errors.As(err, &se):
		return se.GRPCStatus().Err()
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "call canceled")
	case errors.Is(err, featurestore.ErrNotFound):
		return status.Error(codes.NotFound, "not found")
	case errors.Is(err, errNotRecorded):
		s.opts.logger.LogAttrs(ctx, slog.LevelError, "degraded decision refused: it could not be recorded", slog.String("method", method), slog.Any("err", err))
		return status.Error(codes.Unavailable, "store unavailable and the decision could not be recorded; retry with back-off")
	case errors.Is(err, featurestore.ErrUnavailable):
		s.opts.logger.LogAttrs(ctx, slog.LevelWarn, "store unavailable", slog.String("method", method), slog.Any("err", err))
		return status.Error(codes.Unavailable, "store unavailable; retry with back-off")
	case errors.Is(err, errNoPolicy):
		return status.Error(codes.Unavailable, "no policy loaded")
	case errors.Is(err, errDraining):
		return status.Error(codes.Unavailable, "server is shutting down")
	case errors.Is(err, featurestore.ErrInvalid):
		s.opts.logger.LogAttrs(ctx, slog.LevelError, "store refused a validated request", slog.String("method", method), slog.Any("err", err))
		return status.Error(codes.InvalidArgument, "request refused by the store")
	case errors.Is(err, featurestore.ErrCorrupt):
		s.opts.logger.LogAttrs(ctx, slog.LevelError, "malformed stored data", slog.String("method", method), slog.Any("err", err))
		return status.Error(codes.DataLoss, "stored data is malformed")
	}
	s.opts.logger.LogAttrs(ctx, slog.LevelError, "internal error", slog.String("method", method), slog.Any("err", err))
	return status.Error(codes.Internal, "internal error")
}
