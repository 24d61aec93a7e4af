// Package pgtest gives tests a PostgreSQL server: one per test binary,
// started on first use and stopped when the tests end, with a new empty
// database per caller.
//
// With PORTCULLIS_TEST_POSTGRES_DSN set, tests use that server (its user
// must be allowed to CREATE DATABASE; each database made is dropped when
// its test ends). Otherwise pgtest runs a throw-away cluster from the
// PostgreSQL server binaries (Debian's /usr/lib/postgresql/*/bin, or
// initdb and postgres on PATH): initdb in a temporary directory, one
// postmaster listening on 127.0.0.1 only, on a free port, with fsync on,
// password (SCRAM) authentication with a password generated per run, and
// the default collation a linguistic ICU one where the server supports it
// (so that tests catch an ORDER BY that depends on the collation). Run as
// root, initdb and postgres (which refuse root) run as the postgres
// system user. Without a DSN and without binaries the test fails, saying
// how to get either.
//
// A package using pgtest calls Run from TestMain, which stops
// the cluster even when tests fail.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable with the DSN of a server to use
// instead of starting one.
const EnvDSN = "PORTCULLIS_TEST_POSTGRES_DSN"

// installHint is how to get a server, for failure messages.
const installHint = "install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql) " +
	"or set " + EnvDSN + " to the DSN of a server whose user may CREATE DATABASE"

var (
	mu      sync.Mutex
	inMain  bool    // Run is running the tests
	srv     *server // started on first use
	srvErr  error   // why it could not start (not retried)
	counter atomic.Int64
)

// server is the server of this test binary.
type server struct {
	admin   *pgx.Conn // maintenance connection (CREATE/DROP DATABASE)
	dsnFor  func(database string) string
	version int // server_version_num
	// A cluster pgtest started; empty for EnvDSN.
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exited
	dir  string
}

// Run runs the tests (m.Run) and returns their code after stopping the
// server (a stop that fails turns a 0 into 1), for a TestMain that checks
// more afterwards (goroutine leaks).
func Run(m *testing.M) int {
	mu.Lock()
	inMain = true
	mu.Unlock()
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	inMain = false
	if srv != nil {
		if err := srv.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping PostgreSQL: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		srv = nil
	}
	return code
}

// NewDatabase creates an empty database on the test binary's server,
// starting the server on first use, and returns its DSN (with the
// password: never log it). The database is dropped, with whatever
// connections are left on it, when tb ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	s := get(tb)
	name := fmt.Sprintf("pcl_test_%d_%s", counter.Add(1), randomHex(4))
	mu.Lock()
	_, err := s.admin.Exec(context.Background(), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	mu.Unlock()
	if err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		drop := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize()
		if s.version >= 130000 {
			drop += " WITH (FORCE)"
		}
		mu.Lock()
		defer mu.Unlock()
		if srv != s {
			return // stopped already
		}
		if _, err := s.admin.Exec(context.Background(), drop); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.dsnFor(name)
}

// Tool returns the path of a PostgreSQL client program (psql, pg_dump)
// of the local installation, or "" when there is none.
func Tool(name string) string {
	if dir := binDir(); dir != "" {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

// get returns the server, starting it on first use.
func get(tb testing.TB) *server {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if !inMain {
		tb.Fatal("pgtest: call pgtest.Run(m) from the package's TestMain, so that the server is stopped")
	}
	if srv == nil && srvErr == nil {
		start := time.Now()
		var how string
		srv, how, srvErr = startServer()
		if srvErr == nil {
			tb.Logf("pgtest: %s in %s", how, time.Since(start).Round(time.Millisecond))
		}
	}
	if srvErr != nil {
		tb.Fatalf("pgtest: %v", srvErr)
	}
	return srv
}

func startServer() (*server, string, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		s, err := external(dsn)
		if err != nil {
			return nil, "", err
		}
		return s, fmt.Sprintf("using the server of %s (PostgreSQL %d)", EnvDSN, s.version/10000), nil
	}
	dir := binDir()
	if dir == "" {
		return nil, "", fmt.Errorf("no PostgreSQL server binaries (initdb, postgres) in /usr/lib/postgresql/*/bin or on PATH: %s", installHint)
	}
	s, err := startCluster(dir)
	if err != nil {
		return nil, "", err
	}
	return s, fmt.Sprintf("started a PostgreSQL %d cluster from %s", s.version/10000, dir), nil
}

// external connects to the server of dsn.
func external(dsn string) (*server, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid DSN", EnvDSN) // the parser's message may quote the password
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		msg := err.Error()
		if cfg.Password != "" {
			msg = strings.ReplaceAll(msg, cfg.Password, "[PASSWORD]")
		}
		return nil, fmt.Errorf("connect to the server of %s (%s:%d): %s", EnvDSN, cfg.Host, cfg.Port, msg)
	}
	s := &server{admin: admin, dsnFor: func(db string) string { return withDatabase(dsn, db) }}
	if err := admin.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&s.version); err != nil {
		admin.Close(ctx)
		return nil, err
	}
	return s, nil
}

// withDatabase returns dsn naming database instead.
func withDatabase(dsn, database string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			u.Path = "/" + database
			return u.String()
		}
	}
	return dsn + " dbname=" + database // key=value: the last one wins
}

// binDir returns the directory of initdb and postgres: the newest of
// Debian's /usr/lib/postgresql/<major>/bin, else initdb's on PATH.
func binDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return majorOf(b) - majorOf(a) })
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isExecutable(filepath.Join(d, "postgres")) {
			return d
		}
	}
	return ""
}

// majorOf returns the version of /usr/lib/postgresql/<major>/bin.
func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// runAs is who runs initdb and postgres: nil for this process's user,
// the postgres system user when this process is root.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and initdb and postgres refuse root: no postgres system user to run them as (%w); %s", err, installHint)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// tempBase returns a directory to create the cluster in that cred's user
// can reach: every parent must be searchable by others when the cluster
// runs as another user (root's TMPDIR may be under /root).
func tempBase(cred *syscall.Credential) string {
	if cred == nil {
		return os.TempDir()
	}
	for _, base := range []string{os.TempDir(), "/tmp", "/var/tmp"} {
		ok := true
		for d := base; ; d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o001 == 0 {
				ok = false
				break
			}
			if d == "/" {
				break
			}
		}
		if ok {
			return base
		}
	}
	return os.TempDir()
}

// chownAll gives dir and everything in it to cred's user.
func chownAll(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
}

// command returns bin/name args, run as cred's user, with output to log.
func command(bin, name string, cred *syscall.Credential, log *os.File, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "TZ=UTC")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}

// startCluster initdbs a cluster in a new temporary directory and starts
// it on 127.0.0.1.
func startCluster(bin string) (s *server, err error) {
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	base := tempBase(cred)
	removeStale(base)
	dir, err := os.MkdirTemp(base, dirPrefix)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Mkdir(filepath.Join(dir, "socket"), 0o700); err != nil {
		return nil, err
	}
	password := randomHex(16)
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "postgres.log")
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	if err := chownAll(dir, cred); err != nil {
		return nil, fmt.Errorf("give the cluster directory to the postgres user: %w", err)
	}
	logTail := func() string {
		b, _ := os.ReadFile(logPath)
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		return strings.TrimSpace(string(b))
	}

	// The data directory is initdb's to create (0700, owned by cred).
	data := filepath.Join(dir, "data")
	initArgs := []string{"-D", data, "-U", "postgres", "--pwfile", pwfile, "--auth", "scram-sha-256",
		"--encoding", "UTF8", "--no-sync"}
	// A linguistic default collation (PostgreSQL 15+ with ICU), else the
	// C locale (UTF-8 if the system has it).
	for i, locale := range [][]string{
		{"--locale", "C.UTF-8", "--locale-provider", "icu", "--icu-locale", "en-US"},
		{"--locale", "C.UTF-8"},
		{"--locale", "C"},
	} {
		os.RemoveAll(data)
		err := command(bin, "initdb", cred, log, append(initArgs, locale...)...).Run()
		if err == nil {
			break
		}
		if i == 2 {
			return nil, fmt.Errorf("initdb: %w:\n%s", err, logTail())
		}
	}
	os.Remove(pwfile)

	var lastErr error
	for range 3 { // the free port may be taken before postgres binds it
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := startPostgres(bin, dir, data, port, password, cred, log)
		if err == nil {
			return s, nil
		}
		lastErr = fmt.Errorf("%w:\n%s", err, logTail())
	}
	return nil, lastErr
}

// dirPrefix starts the name of every cluster directory.
const dirPrefix = "portcullis-pgtest-"

// removeStale removes the cluster directories in base that a test binary
// which panicked (and so never ran Run's cleanup) left behind: those whose
// postmaster is not running (its postgres got SIGINT when the binary
// died) and that are older than any cluster still being set up.
func removeStale(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < 10*time.Minute {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid")); err == nil {
			pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
			if pid > 0 && syscall.Kill(pid, 0) != syscall.ESRCH {
				continue // running
			}
		}
		os.RemoveAll(d)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startPostgres runs the postmaster of data on 127.0.0.1:port and waits
// until it accepts a login.
func startPostgres(bin, dir, data string, port int, password string, cred *syscall.Credential, log *os.File) (*server, error) {
	cmd := command(bin, "postgres", cred, log, "-D", data,
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(port),
		"-c", "unix_socket_directories="+filepath.Join(dir, "socket"),
		"-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "max_connections=300",
		"-c", "log_min_messages=warning", "-c", "log_min_error_statement=panic")
	// If the test binary dies without stopping it, the postmaster does a
	// fast shutdown instead of outliving it. The signal comes when the
	// thread that started it ends, so that thread is kept (locked to the
	// goroutine that waits for the postmaster) until the postmaster exits.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGINT
	started, done := make(chan error), make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		err := cmd.Start()
		started <- err
		if err == nil {
			cmd.Wait()
		}
		close(done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	dsnFor := func(db string) string {
		u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", password),
			Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: "/" + db, RawQuery: "sslmode=disable"}
		return u.String()
	}
	s := &server{dsnFor: dsnFor, cmd: cmd, done: done, dir: dir}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		admin, err := pgx.Connect(ctx, dsnFor("postgres"))
		if err == nil {
			err = admin.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&s.version)
			cancel()
			if err != nil {
				admin.Close(context.Background())
				s.kill()
				return nil, err
			}
			s.admin = admin
			return s, nil
		}
		cancel()
		select {
		case <-done:
			return nil, fmt.Errorf("postgres exited: %v", cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("postgres did not accept connections within a minute: %w", err)
		}
	}
}

// stop closes the admin connection and, for a cluster pgtest started,
// shuts the postmaster down (fast shutdown, then kill) and removes its
// directory.
func (s *server) stop() error {
	var errs []error
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, s.admin.Close(ctx))
		cancel()
	}
	if s.cmd != nil {
		s.kill()
		errs = append(errs, os.RemoveAll(s.dir))
	}
	return errors.Join(errs...)
}

// kill shuts the postmaster down: SIGINT (fast shutdown: roll back, close
// connections, checkpoint), SIGKILL if it has not exited within 30s.
func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
