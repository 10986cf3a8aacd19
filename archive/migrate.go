package archive

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// migrationFiles holds the schema's migrations, NNNN_name.sql, applied in the order of NNNN.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// Advisory lock keys (pg_advisory_xact_lock, one bigint space per database). The values are
// arbitrary; they only must not collide with other users of advisory locks in the database.
const (
	// migrateLock serialises migrations of replicas that start at once.
	migrateLock int64 = 0x6172_6269_0001 // "arbi" 1
	// partitionLock serialises creating and dropping partitions.
	partitionLock int64 = 0x6172_6269_0002 // "arbi" 2
)

// migration is one embedded migration file.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. Versions must be unique.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		prefix, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s have the same version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

// migrate applies the migrations the database lacks, in order, in one transaction under
// migrateLock: a replica that starts while another migrates waits for it, then finds
// nothing left to do. Each applied version is recorded in arbiter.schema_migrations.
func (a *Archive) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return dbErr("migrate archive", err)
	}
	defer rollback(ctx, tx)
	// The lock comes first: CREATE ... IF NOT EXISTS is not safe against a concurrent CREATE.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLock); err != nil {
		return dbErr("migrate archive: lock", err)
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS arbiter;
CREATE TABLE IF NOT EXISTS arbiter.schema_migrations (
    version    integer     PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
		return dbErr("migrate archive: create schema", err)
	}
	rows, _ := tx.Query(ctx, "SELECT version FROM arbiter.schema_migrations")
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return dbErr("migrate archive: read versions", err)
	}
	if n := len(ms); n > 0 && slices.ContainsFunc(applied, func(v int32) bool { return int(v) > ms[n-1].version }) {
		// A newer binary migrated this database (a rolling upgrade, or a rollback of this one).
		// Migrations only add, so this binary can still run; say so once.
		a.logger.LogAttrs(ctx, slog.LevelWarn, "archive schema is newer than this binary",
			slog.Int("binary_version", ms[n-1].version), slog.Int("database_version", int(slices.Max(applied))))
	}
	for _, m := range ms {
		if slices.Contains(applied, int32(m.version)) {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return dbErr("migrate archive: apply "+m.name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO arbiter.schema_migrations (version) VALUES ($1)", m.version); err != nil {
			return dbErr("migrate archive: record "+m.name, err)
		}
		a.logger.LogAttrs(ctx, slog.LevelInfo, "archive migration applied", slog.String("migration", m.name))
	}
	if err := tx.Commit(ctx); err != nil {
		return dbErr("migrate archive: commit", err)
	}
	return nil
}
