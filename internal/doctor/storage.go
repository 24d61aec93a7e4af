package doctor

import (
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/portcullis/portcullis/internal/config"
)

// storage checks the PostgreSQL connection settings: a DSN that cannot be
// read or parsed, and one that may send the password and every audit
// record in clear to a database on another host.
func (l *linter) storage() {
	s := &l.cfg.Storage
	if s.Driver != config.DriverPostgres {
		return
	}
	key := "storage.dsn"
	if s.DSNFile != "" {
		key = "storage.dsn_file"
	}
	dsn, err := s.PostgresDSN()
	if err != nil {
		l.add("storage-dsn-unusable", Critical, key, "set PORTCULLIS_STORAGE_DSN or a 0600 storage.dsn_file",
			"the PostgreSQL connection string cannot be used: %v", err)
		return
	}
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil { // the parser's message may quote the DSN: never shown
		l.add("storage-dsn-unusable", Critical, key, "check the connection string's syntax (URL or key=value pairs)",
			"the PostgreSQL connection string does not parse")
		return
	}
	if localDatabase(pc.Host) {
		return
	}
	plain := pc.TLSConfig == nil
	for _, fb := range pc.Fallbacks {
		plain = plain || fb.TLSConfig == nil // sslmode prefer/allow fall back to plain text
	}
	if plain {
		l.add("storage-dsn-no-tls", l.bySeverity(Critical, Warning), key, "add sslmode=verify-full (with sslrootcert) to the DSN",
			"the connection to PostgreSQL at %s may be unencrypted (sslmode disable, allow or prefer): the password and every audit record would cross the network in clear", pc.Host)
	}
}

// localDatabase reports whether a PostgreSQL host is a unix socket
// directory or a loopback address.
func localDatabase(host string) bool {
	return strings.HasPrefix(host, "/") || config.IsLoopbackHost(host)
}
