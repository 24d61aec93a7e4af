package config

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/datadir"
)

// Storage drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// StorageConfig selects the store backend (issue 12). SQLite, the
// default, keeps everything in <data_dir>/portcullis.db for one gateway
// process. PostgreSQL lets several gateway replicas share users, keys,
// policies' grants, approvals, quarantines, quotas and the audit log.
type StorageConfig struct {
	// Driver is "sqlite" (default) or "postgres".
	Driver string `yaml:"driver"`
	// DSN is the PostgreSQL connection string (URL or key=value form, as
	// libpq and pgx accept). It usually holds a password, so set it with
	// PORTCULLIS_STORAGE_DSN or keep it in DSNFile rather than in the
	// configuration file. There is no default: postgres without a DSN
	// refuses to start (seed 001: never a default password).
	DSN string `yaml:"dsn"`
	// DSNFile is a file (mode 0600 or stricter, not a symbolic link)
	// holding the DSN, e.g. a mounted secret; surrounding white space is
	// ignored. Exclusive with DSN.
	DSNFile string `yaml:"dsn_file"`
	// ReplicaID names this gateway among the replicas sharing one
	// PostgreSQL (logs, audit detail, the id of its audit chain). Empty:
	// the host name. Letters, digits, '.', '_' and '-', at most 64
	// (audit.ValidChainID).
	ReplicaID string `yaml:"replica_id"`
}

func (c *Config) validateStorage(bad func(key, format string, args ...any)) {
	s := &c.Storage
	s.Driver = strings.ToLower(strings.TrimSpace(s.Driver))
	switch s.Driver {
	case DriverSQLite:
		if s.DSN != "" || s.DSNFile != "" {
			bad("storage.dsn", "is only for driver %q; driver %q keeps its database in data_dir", DriverPostgres, DriverSQLite)
		}
	case DriverPostgres:
		switch {
		case s.DSN != "" && s.DSNFile != "":
			bad("storage.dsn", "set storage.dsn (or PORTCULLIS_STORAGE_DSN) or storage.dsn_file, not both")
		case s.DSN == "" && s.DSNFile == "":
			bad("storage.dsn", "driver %q needs a connection string: set PORTCULLIS_STORAGE_DSN or storage.dsn_file (there is no default)", DriverPostgres)
		case s.DSNFile != "":
			abs, err := filepath.Abs(s.DSNFile)
			if err != nil {
				bad("storage.dsn_file", "%v", err)
				break
			}
			s.DSNFile = abs
		}
	default:
		bad("storage.driver", "must be %q or %q, got %q", DriverSQLite, DriverPostgres, s.Driver)
	}
	if s.ReplicaID != "" && !audit.ValidChainID(s.ReplicaID) {
		bad("storage.replica_id", "must be 1-64 letters, digits, '.', '_' or '-', got %q", s.ReplicaID)
	}
}

// PostgresDSN returns the connection string: storage.dsn, or the content
// of storage.dsn_file read with datadir.ReadPrivate (a regular file, not a
// symbolic link, not readable or writable by group or others, at most
// 64 KiB). Errors never contain the DSN.
func (s *StorageConfig) PostgresDSN() (string, error) {
	if s.DSNFile == "" {
		if s.DSN == "" {
			return "", fmt.Errorf("%w: storage.dsn: not set", ErrInvalid)
		}
		return s.DSN, nil
	}
	b, err := datadir.ReadPrivate(s.DSNFile)
	if err != nil {
		return "", fmt.Errorf("%w: storage.dsn_file: %w", ErrInvalid, err)
	}
	dsn := strings.TrimSpace(string(b))
	if dsn == "" {
		return "", fmt.Errorf("%w: storage.dsn_file %s is empty", ErrInvalid, s.DSNFile)
	}
	return dsn, nil
}
