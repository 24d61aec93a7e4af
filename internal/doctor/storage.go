package doctor

import (
	"crypto/tls"
	"slices"
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
	// Every host of a multi-host DSN (host=a,b), each with its own TLS
	// settings: pgconn tries them in turn (and, with sslmode prefer or
	// allow, each also in plain text).
	type attempt struct {
		host string
		tls  *tls.Config
	}
	attempts := []attempt{{pc.Host, pc.TLSConfig}}
	for _, fb := range pc.Fallbacks {
		attempts = append(attempts, attempt{fb.Host, fb.TLSConfig})
	}
	var plain, unverified []string
	mode := ""
	for _, a := range attempts {
		if localDatabase(a.host) {
			continue
		}
		switch {
		case a.tls == nil:
			plain = appendOnce(plain, a.host)
		case a.tls.InsecureSkipVerify && a.tls.VerifyPeerCertificate == nil:
			unverified, mode = appendOnce(unverified, a.host), "sslmode=require checks no certificate"
		case a.tls.InsecureSkipVerify && mode == "":
			unverified, mode = appendOnce(unverified, a.host), "sslmode=verify-ca does not check the host name"
		case a.tls.InsecureSkipVerify:
			unverified = appendOnce(unverified, a.host)
		}
	}
	if len(plain) > 0 {
		l.add("storage-dsn-no-tls", l.bySeverity(Critical, Warning), key, "add sslmode=verify-full (with sslrootcert) to the DSN",
			"the connection to PostgreSQL at %s may be unencrypted (sslmode disable, allow or prefer): the password and every audit record would cross the network in clear", strings.Join(plain, ", "))
		return
	}
	if len(unverified) > 0 {
		l.add("storage-dsn-tls-unverified", Warning, key, "use sslmode=verify-full (with sslrootcert) instead",
			"the connection to PostgreSQL at %s is encrypted but the server is not authenticated (%s): someone on the path can pose as the database and read or drop audit records", strings.Join(unverified, ", "), mode)
	}
}

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// localDatabase reports whether a PostgreSQL host is a unix socket
// directory or a loopback address.
func localDatabase(host string) bool {
	return strings.HasPrefix(host, "/") || config.IsLoopbackHost(host)
}
