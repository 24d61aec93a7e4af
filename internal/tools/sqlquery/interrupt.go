package sqlquery

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"sync"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// interrupter stops the statement running on one connection.
//
// modernc.org/sqlite interrupts a statement when its context ends only
// while QueryContext runs (the first step); the steps that rows.Next makes
// later are not interrupted, and database/sql does not close the rows
// while Next runs. A query whose second row takes forever (a compound
// SELECT whose second part is an endless recursive CTE) would then spin
// in the gateway for ever. The driver exports no handle, so the
// connection's sqlite3* is read from its unexported "db" field and
// sqlite3_interrupt — safe from any thread while the connection is open —
// is called on it. probeDriver checks in New that the field is there, so a
// driver update that moves it stops the tool from starting instead of
// leaving queries unbounded.
type interrupter struct {
	mu     sync.Mutex
	db     uintptr
	closed bool
}

// newInterrupter returns the interrupter of conn (a modernc connection).
func newInterrupter(conn *sql.Conn) (*interrupter, error) {
	in := &interrupter{}
	err := conn.Raw(func(dc any) error {
		var err error
		in.db, err = handleOf(dc)
		return err
	})
	if err != nil {
		return nil, err
	}
	return in, nil
}

// interrupt stops the running statement, if the connection is still open.
func (in *interrupter) interrupt() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return
	}
	tls := libc.NewTLS()
	sqlite3.Xsqlite3_interrupt(tls, in.db)
	tls.Close()
}

// close marks the connection as about to close; it waits for an
// interrupt in progress. After it, interrupt does nothing.
func (in *interrupter) close() {
	in.mu.Lock()
	in.closed = true
	in.mu.Unlock()
}

// handleOf returns the sqlite3* of a modernc.org/sqlite driver connection.
func handleOf(dc any) (uintptr, error) {
	v := reflect.ValueOf(dc)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct ||
		v.Elem().Type().PkgPath() != "modernc.org/sqlite" || v.Elem().Type().Name() != "conn" {
		return 0, fmt.Errorf("%w: driver connection is %T, want *sqlite.conn", ErrDriver, dc)
	}
	f := v.Elem().FieldByName("db")
	if !f.IsValid() || f.Kind() != reflect.Uintptr || f.Uint() == 0 {
		return 0, fmt.Errorf("%w: the driver connection has no sqlite3 handle field \"db\"", ErrDriver)
	}
	return uintptr(f.Uint()), nil
}

// probeDriver checks on an in-memory database that the connection handle
// can be found and that an interrupt stops a running statement.
func probeDriver() error {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDriver, err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDriver, err)
	}
	defer conn.Close()
	in, err := newInterrupter(conn)
	if err != nil {
		return err
	}
	// The second row never comes: the CTE is finite (a few seconds
	// uninterrupted), so a failed probe cannot hang New.
	rows, err := conn.QueryContext(ctx, "SELECT 1 UNION ALL SELECT * FROM (WITH RECURSIVE c(x) AS "+
		"(SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 20000000) SELECT x FROM c WHERE x < 0)")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDriver, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return fmt.Errorf("%w: probe query returned no row: %v", ErrDriver, rows.Err())
	}
	in.interrupt() // the flag stays set until no statement runs: the next step stops
	if rows.Next() || rows.Err() == nil {
		return fmt.Errorf("%w: sqlite3_interrupt did not stop the statement", ErrDriver)
	}
	in.close()
	return nil
}
