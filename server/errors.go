package server

import (
	"context"
	"errors"

	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// toStatus turns the error of an RPC into its gRPC status, through rpcstatus.Convert, the
// one place that chooses codes and messages (and logs the server's own faults, once).
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	return rpcstatus.Convert(ctx, s.opts.logger, method, err)
}

// isUnavailable reports whether err says the store could not be used in time: the answer
// degrades (Decide) or fails closed (Confirm).
func isUnavailable(err error) bool {
	return errors.Is(err, featurestore.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}
