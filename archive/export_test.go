package archive

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// QueryRowForTest runs a query on one of a's connections, for tests that check session
// settings.
func QueryRowForTest(a *Archive, ctx context.Context, sql string) pgx.Row {
	return a.pool.QueryRow(ctx, sql)
}
