package server

import (
	"context"

	"github.com/arbiter-dev/arbiter/rpcstatus"
)

// toStatus turns the error of an RPC into its gRPC status, through rpcstatus.Convert, the
// one place that chooses codes and messages (and logs the server's own faults, once).
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	return rpcstatus.Convert(ctx, s.opts.logger, method, err)
}
