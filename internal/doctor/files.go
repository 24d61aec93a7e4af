package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/portcullis/portcullis/internal/datadir"
)

// keyFile is a file whose permissions the lint checks.
type keyFile struct {
	key  string // configuration key that names it
	path string
	// configured: named in the configuration, so it must exist (data-dir
	// defaults are created at the first start).
	configured bool
	// follow: the gateway follows a symbolic link (tls.LoadX509KeyPair);
	// every other secret is read with datadir.ReadPrivate, which refuses one.
	follow bool
	// public: only its existence matters (a certificate).
	public bool
}

// keyFiles lists the secret files to check: those in the data directory
// if withDataDir, and every file the configuration names.
func (l *linter) keyFiles(withDataDir bool) []keyFile {
	c := l.cfg
	var out []keyFile
	inDir := []string{datadir.ServerSecret, datadir.AuditKey, datadir.AdminKeyFile, datadir.SecretsKey}
	if c.Audit.ChainKeyFile == "" {
		inDir = append(inDir, datadir.AuditChainKey)
	}
	if c.Audit.SigningKeyFile == "" {
		inDir = append(inDir, datadir.AuditSigningKey)
	}
	for _, n := range inDir {
		if withDataDir {
			out = append(out, keyFile{key: "data_dir", path: filepath.Join(c.DataDir, n)})
		}
	}
	add := func(key, path string, follow, public bool) {
		if path != "" {
			out = append(out, keyFile{key: key, path: path, configured: true, follow: follow, public: public})
		}
	}
	add("audit.chain_key_file", c.Audit.ChainKeyFile, false, false)
	add("audit.signing_key_file", c.Audit.SigningKeyFile, false, false)
	add("tls.cert_file", c.TLS.CertFile, true, true)
	add("tls.key_file", c.TLS.KeyFile, true, false)
	for i, s := range c.Audit.Sinks {
		add(fmt.Sprintf("audit.sinks[%d].token_file", i), s.TokenFile, false, false)
	}
	for i, w := range c.Alerts.Webhooks {
		add(fmt.Sprintf("alerts.webhooks[%d].secret_file", i), w.SecretFile, false, false)
	}
	add("alerts.smtp.password_file", c.Alerts.SMTP.PasswordFile, false, false)
	return out
}

func (l *linter) files() {
	c := l.cfg
	// private: the data directory is mode 0700 or stricter; listed: it is
	// a directory whose key files can be inspected.
	private, listed := false, false
	if c.DataDir != "" {
		fi, err := l.fsys.Stat(c.DataDir)
		switch {
		case errors.Is(err, fs.ErrNotExist): // created with mode 0700 at the first start
		case err != nil:
			l.add("data-dir-permissions", Warning, "data_dir", "check the path and its parents' permissions",
				"cannot inspect the data directory: %v", err)
		case !fi.IsDir():
			l.add("data-dir-permissions", Critical, "data_dir", "point data_dir at a directory (created with mode 0700 when missing)",
				"data directory %s is not a directory", c.DataDir)
		case fi.Mode().Perm()&0o077 != 0:
			listed = true
			// An empty directory exposes nothing yet, and the gateway
			// refuses to use it as it is: a note, not a hole.
			sev, what := Info, "holds no database or key yet; the gateway refuses to use it until it is private"
			if l.dataDirUsed() {
				sev, what = Critical, "other users can reach the database and keys (the gateway refuses it)"
			}
			l.add("data-dir-permissions", sev, "data_dir", fmt.Sprintf("chmod 700 %s", c.DataDir),
				"data directory %s has mode %04o: %s", c.DataDir, fi.Mode().Perm(), what)
		default:
			private, listed = true, true
		}
		for _, e := range l.exposures() {
			if overlaps(c.DataDir, e.path) {
				l.add("data-dir-exposed", Critical, e.key,
					"keep the data directory outside the workspace and every path mounted into sandboxes",
					"%s (%s) overlaps the data directory %s: tools or plugins can read the database and keys", e.key, e.path, c.DataDir)
			}
		}
	}
	for _, k := range l.keyFiles(listed) {
		l.keyFile(k)
	}
	if l.prod && private {
		if _, err := l.fsys.Lstat(filepath.Join(c.DataDir, datadir.AdminKeyFile)); err == nil {
			l.add("admin-key-on-disk", Info, "data_dir",
				"keep the key in a secret manager, pass it as PORTCULLIS_ADMIN_KEY and delete the file",
				"the bootstrap admin API key is stored in %s", filepath.Join(c.DataDir, datadir.AdminKeyFile))
		}
	}
	if c.Workspace != "" {
		if fi, err := l.fsys.Stat(c.Workspace); err == nil && fi.IsDir() && fi.Mode().Perm()&0o002 != 0 {
			l.add("workspace-world-writable", Warning, "workspace", fmt.Sprintf("chmod o-w %s", c.Workspace),
				"workspace %s has mode %04o: every local user can plant files that tools read and run", c.Workspace, fi.Mode().Perm())
		}
	}
}

// dataDirUsed reports whether the data directory holds the database or a
// key file.
func (l *linter) dataDirUsed() bool {
	for _, n := range []string{datadir.DatabaseFile, datadir.ServerSecret, datadir.AuditKey, datadir.AdminKeyFile,
		datadir.SecretsKey, datadir.AuditChainKey, datadir.AuditSigningKey} {
		if _, err := l.fsys.Lstat(filepath.Join(l.cfg.DataDir, n)); err == nil {
			return true
		}
	}
	return false
}

func (l *linter) keyFile(k keyFile) {
	stat := l.fsys.Lstat
	if k.follow {
		stat = l.fsys.Stat
	}
	fi, err := stat(k.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if k.configured {
			l.add("key-file-missing", Warning, k.key, "create the file (mode 0600) or correct the path",
				"%s does not exist: the gateway fails at start", k.path)
		}
		return
	case err != nil:
		l.add("key-file-missing", Warning, k.key, "check the path and its parents' permissions", "cannot inspect %s: %v", k.path, err)
		return
	case fi.Mode()&fs.ModeSymlink != 0:
		l.add("key-file-type", Warning, k.key, "point the key at the file itself",
			"%s is a symbolic link: the gateway refuses to follow it for a secret", k.path)
		return
	case !fi.Mode().IsRegular():
		l.add("key-file-type", Warning, k.key, "use a regular file (mode 0600)", "%s is not a regular file", k.path)
		return
	case k.public:
		return
	}
	perm := fi.Mode().Perm()
	fix := fmt.Sprintf("chmod 600 %s", k.path)
	switch {
	case perm&0o007 != 0:
		l.add("key-file-permissions", Critical, k.key, fix,
			"%s has mode %04o: every local user can read or replace the key", k.path, perm)
	case perm&0o070 != 0 && !k.follow:
		// Read with datadir.ReadPrivate, which refuses any group or other
		// permission: the gateway would not start.
		l.add("key-file-permissions", Critical, k.key, fix,
			"%s has mode %04o: its group can read the key, and the gateway refuses to use it", k.path, perm)
	case perm&0o070 != 0:
		l.add("key-file-permissions", Warning, k.key, fix,
			"%s has mode %04o: its group can read the key", k.path, perm)
	}
}
