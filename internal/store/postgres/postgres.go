// Package postgres is the PostgreSQL store backend for gateways that run as
// several replicas sharing one database (issue 12). It implements
// store.Store, secrets.Backend and pin.Backend with the semantics of the
// embedded SQLite backend (internal/store/sqlite), which the shared
// conformance suite (internal/store/storetest) checks on both.
//
// It speaks to the server through a pgx connection pool per handle, with
// schema migrations embedded and applied by goose under a session advisory
// lock, so replicas starting at once migrate once. Portcullis needs a
// database (or a schema, chosen with search_path in the DSN) of its own:
// its tables have plain names (users, roles, sessions).
//
// Durability: every connection runs with synchronous_commit at least "on"
// (a server or role default of "off" is overridden per connection), so a
// commit, and with it an acknowledged audit record, survives a server crash.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/portcullis/portcullis/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is a PostgreSQL-backed store.Store, secrets.Backend and pin.Backend.
// It is safe for concurrent use; several DBs (in one process or in
// several replicas) may share one database.
type DB struct {
	pool *pgxpool.Pool
	now  func() time.Time

	closeOnce sync.Once
}

var _ store.Store = (*DB)(nil)

// Options configures Open.
type Options struct {
	// Logger receives migration notices; required.
	Logger *slog.Logger
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// ConnectTimeout bounds connecting to the server, per attempt and for
	// Open's first connection as a whole (default 10s; a connect_timeout
	// parameter in the DSN wins).
	ConnectTimeout time.Duration
	// ReadOnly opens for offline readers (audit verify) while gateways
	// serve: no migrations are applied (a newer binary must not change
	// the schema under older replicas), and every transaction is
	// read-only (default_transaction_read_only), so writes fail.
	ReadOnly bool
}

// DefaultConnectTimeout is Options.ConnectTimeout when unset.
const DefaultConnectTimeout = 10 * time.Second

// migrationLockID is the session advisory lock key that serializes the
// migrations of replicas starting at once ("portcullis-migrate"; not goose's
// default, which other goose users of the database may hold).
const migrationLockID int64 = 0x7063_6c5f_6d69_6772

// Open connects to the PostgreSQL server named by dsn (a postgres:// URL or
// libpq key=value pairs; PG* environment variables fill in what it leaves
// out, as in libpq), checks that it answers within the connect timeout and
// applies pending migrations. It fails fast with an error naming the
// host, database and user but never the DSN or its password: when dsn is
// empty or malformed, when the server cannot be reached or refuses the
// login, or when migrating fails. Replicas may Open one database at once:
// the first migrates, the others wait for it (up to 5 minutes).
func Open(ctx context.Context, dsn string, opts Options) (*DB, error) {
	if opts.Logger == nil {
		return nil, errors.New("postgres: nil logger")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if strings.TrimSpace(dsn) == "" {
		return nil, errors.New("postgres: empty DSN: want a postgres://user:password@host:port/database URL or libpq key=value pairs")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parser's message may quote the DSN (and so the password):
		// report that it failed, not how.
		return nil, errors.New("postgres: the DSN is not a valid connection string: want a postgres://user:password@host:port/database URL or libpq key=value pairs")
	}
	if cfg.ConnConfig.ConnectTimeout <= 0 {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	if cfg.MaxConns < 2 {
		cfg.MaxConns = 2 // the migration lock holds one connection
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "portcullis"
	}
	if opts.ReadOnly {
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	cfg.AfterConnect = enforceDurability
	password := cfg.ConnConfig.Password
	where := fmt.Sprintf("%s (database %q, user %q)", hostPort(cfg.ConnConfig), cfg.ConnConfig.Database, cfg.ConnConfig.User)

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, redact(fmt.Errorf("postgres: connect to %s: %w", where, err), password, dsn, where)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.ConnConfig.ConnectTimeout)
	err = pool.Ping(pctx)
	cancel()
	if err != nil {
		pool.Close()
		return nil, redact(fmt.Errorf("postgres: connect to %s within %s: %w", where, cfg.ConnConfig.ConnectTimeout, err), password, dsn, where)
	}
	if !opts.ReadOnly {
		if err := migrate(ctx, pool, opts.Logger); err != nil {
			pool.Close()
			return nil, redact(err, password, dsn, where)
		}
	}
	return &DB{pool: pool, now: opts.Now}, nil
}

// enforceDurability runs on every new connection: a synchronous_commit of
// "off" (server, database or role default, or the DSN's options) would
// acknowledge commits, audit records among them, that a crash can lose.
// Stronger settings (remote_write, remote_apply) are kept.
func enforceDurability(ctx context.Context, c *pgx.Conn) error {
	_, err := c.Exec(ctx, `SELECT set_config('synchronous_commit', 'on', false)
		WHERE current_setting('synchronous_commit') = 'off'`)
	return err
}

func hostPort(c *pgx.ConnConfig) string {
	if strings.HasPrefix(c.Host, "/") {
		return fmt.Sprintf("socket %s/.s.PGSQL.%d", c.Host, c.Port)
	}
	return fmt.Sprintf("%s:%d", c.Host, c.Port)
}

// minRedactedPassword is the shortest password redact replaces: a
// shorter one is likely to stand in ordinary text of the message.
const minRedactedPassword = 8

// secretFreeError carries a message scrubbed of the password; Unwrap keeps
// the cause for errors.Is (a deadline, a refused connection).
type secretFreeError struct {
	msg string
	err error
}

func (e *secretFreeError) Error() string { return e.msg }
func (e *secretFreeError) Unwrap() error { return e.err }

// redact returns err with every occurrence of the DSN and of the password
// removed from its message (pgx names host, database and user, never the
// password; this makes sure of it). The password is replaced only where
// replacing cannot itself reveal it: when it is at least
// minRedactedPassword bytes and not part of public, the host, port,
// database and user the message names (a password "5432" or equal to the
// user name would otherwise show up as "host:[PASSWORD]").
func redact(err error, password, dsn, public string) error {
	msg := err.Error()
	if dsn != "" {
		msg = strings.ReplaceAll(msg, dsn, "[DSN]")
	}
	if len(password) >= minRedactedPassword && !strings.Contains(public, password) {
		msg = strings.ReplaceAll(msg, password, "[PASSWORD]")
	}
	return &secretFreeError{msg: msg, err: errors.Unwrap(err)}
}

// migrate applies pending migrations under the migration lock and logs
// each one applied (nothing when the schema is current).
func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID), lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if err := store.CheckSchemaNotNewer(ctx, p); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	for _, r := range results {
		log.Info("postgres: schema migrated", "version", r.Source.Version, "took", r.Duration)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be released.
// Closing twice is harmless.
func (db *DB) Close() error {
	db.closeOnce.Do(db.pool.Close)
	return nil
}

// Ping checks that the server answers and accepts a read-write transaction
// (a hot standby or a read-only database refuses it).
func (db *DB) Ping(ctx context.Context) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadWrite})
	if err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return tx.Rollback(ctx)
}

// querier is what the pool and a transaction have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// rollback ends tx if it is still open (deferred after Begin; after a
// commit it does nothing). It runs even when ctx is done, so that the
// connection goes back to the pool clean, but for 5s at most (pgx closes
// a connection whose rollback fails).
func rollback(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(ctx)
}

func ns(t time.Time) int64 { return t.UnixNano() }

func fromNS(v int64) time.Time { return time.Unix(0, v).UTC() }

func nullNS(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := t.UnixNano()
	return &v
}

func fromNullNS(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := fromNS(*v)
	return &t
}

// SQLSTATEs this backend maps to store categories.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeBadCharacter        = "22021" // character_not_in_repertoire: NUL, invalid UTF-8
	codeUntranslatable      = "22P05"
)

func pgCode(err error) (code, constraint string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.ConstraintName
	}
	return "", ""
}

func isUnique(err error) bool {
	c, _ := pgCode(err)
	return c == codeUniqueViolation
}

func isForeignKey(err error) bool {
	c, _ := pgCode(err)
	return c == codeForeignKeyViolation
}

// wrap labels err with op; text PostgreSQL cannot hold (a NUL byte,
// invalid UTF-8), which SQLite would have stored, is store.ErrInvalid.
func wrap(op string, err error) error {
	switch c, _ := pgCode(err); c {
	case codeBadCharacter, codeUntranslatable:
		return fmt.Errorf("%w: postgres: %s: text with a NUL byte or invalid UTF-8: %w", store.ErrInvalid, op, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// storable returns s as PostgreSQL text can hold it: unchanged when it is
// valid UTF-8 without NUL bytes (always, for names the gateway made),
// else with each invalid byte and each NUL replaced by U+FFFD. Records
// written in batches (audit events, violations) go through it so that one
// client-supplied string cannot fail everyone's batch.
func storable(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
