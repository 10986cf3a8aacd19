package featurestore

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// SetClientLogger routes the Redis client's own log lines (failed dials, pool and cluster
// state changes), which go-redis otherwise prints as plain text on stderr, through l, at
// level Warn with component "redis-client", so that the service logs in one format. It is
// process-wide, as the client's logger is.
func SetClientLogger(l *slog.Logger) {
	redis.SetLogger(clientLogger{l.With("component", "redis-client")})
}

// clientLogger is go-redis' logging interface on a slog.Logger.
type clientLogger struct{ l *slog.Logger }

func (c clientLogger) Printf(ctx context.Context, format string, v ...any) {
	c.l.WarnContext(ctx, fmt.Sprintf(format, v...))
}
