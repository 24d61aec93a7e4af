//go:build linux

package native

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// Config configures the native runtime.
type Config struct {
	// ReadOnlyPaths are host paths mounted read-only at the same path in
	// every sandbox (system directories). Missing ones are skipped;
	// symlinks are recreated as symlinks.
	ReadOnlyPaths []string
	// Executable is the binary re-executed as init (default
	// /proc/self/exe); it is run from a sealed memfd copy.
	Executable string
	// DefaultTmpSize and DefaultWorkSize size /tmp and the work dir when
	// a Spec does not (default 64 MiB each).
	DefaultTmpSize  int64
	DefaultWorkSize int64
	// PoolSize is the number of warm inits kept per mount layout
	// (default 2; negative disables the pool).
	PoolSize int
	// AllowDegraded runs without a missing mechanism (cgroups, seccomp,
	// the memfd copy) instead of refusing to start. Each one missing is
	// logged as an error at start and listed in Report().Degraded.
	AllowDegraded bool
}

// Report says which isolation mechanisms the runtime uses on this host.
type Report struct {
	Seccomp     bool
	LandlockABI int // 0: none
	Cgroups     CgroupReport
	Memfd       bool
	PoolSize    int
	// Degraded lists mechanisms that are missing and tolerated because
	// AllowDegraded is set.
	Degraded []string
}

// Runtime runs Specs in fresh namespaces. Safe for concurrent use; Close
// releases the warm pool.
type Runtime struct {
	cfg    Config
	log    *slog.Logger
	exe    *os.File // sealed copy (or the executable itself, degraded)
	cg     *cgroupInfo
	report Report

	mu      sync.Mutex
	closed  bool
	pools   map[string]*pool
	bridges map[string]*egressBridge
	// inflight counts runs, prewarms, refills and reaps; Close waits for it.
	// Adds happen under mu while open, or while the count is held positive
	// by the caller, never after Close started waiting from zero.
	inflight sync.WaitGroup
}

var _ sandbox.Runtime = (*Runtime)(nil)

// cgroupSeq names sandbox cgroups uniquely within the process (several
// runtimes may share it).
var cgroupSeq atomic.Uint64

// maxPools bounds the distinct mount layouts that get a warm pool.
const maxPools = 8

// New returns a native runtime. It fails with sandbox.ErrUnavailable when
// a required mechanism is missing (root, to map the sandbox's users onto
// host ids that own no files; seccomp; cgroups; memfd) unless
// AllowDegraded tolerates it.
func New(cfg Config, log *slog.Logger) (*Runtime, error) {
	if log == nil {
		return nil, errors.New("native: nil logger")
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: the native runtime needs root (to map sandbox users onto unused host ids)", sandbox.ErrUnavailable)
	}
	for _, p := range cfg.ReadOnlyPaths {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return nil, fmt.Errorf("%w: read-only path %q is not a clean absolute path", sandbox.ErrInvalidSpec, p)
		}
	}
	if cfg.Executable == "" {
		cfg.Executable = "/proc/self/exe"
	}
	if cfg.DefaultTmpSize <= 0 {
		cfg.DefaultTmpSize = 64 << 20
	}
	if cfg.DefaultWorkSize <= 0 {
		cfg.DefaultWorkSize = 64 << 20
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = 2
	}
	r := &Runtime{cfg: cfg, log: log, pools: map[string]*pool{}, bridges: map[string]*egressBridge{}}
	degrade := func(what string, err error) error {
		if !cfg.AllowDegraded {
			return fmt.Errorf("%w: %s: %w", sandbox.ErrUnavailable, what, err)
		}
		log.Error("SANDBOX DEGRADED: running without "+what, "err", err)
		r.report.Degraded = append(r.report.Degraded, what)
		return nil
	}
	if err := seccompSupported(); err != nil {
		if err := degrade("seccomp", err); err != nil {
			return nil, err
		}
	} else {
		r.report.Seccomp = true
	}
	exe, err := sealedCopy(cfg.Executable)
	if err != nil {
		if err := degrade("memfd copy of the init", err); err != nil {
			return nil, err
		}
		if exe, err = os.Open(cfg.Executable); err != nil {
			return nil, fmt.Errorf("%w: open init executable: %w", sandbox.ErrUnavailable, err)
		}
	} else {
		r.report.Memfd = true
	}
	r.exe = exe
	if ci, err := detectCgroups(); err != nil {
		if err := degrade("cgroups", err); err != nil {
			exe.Close()
			return nil, err
		}
	} else {
		r.report.Cgroups = ci.Report()
		if err := ci.prepare(); err != nil {
			if err := degrade("cgroups", err); err != nil {
				exe.Close()
				return nil, err
			}
		} else {
			r.cg = ci
		}
	}
	r.report.LandlockABI = landlockABI()
	r.report.PoolSize = max(cfg.PoolSize, 0)
	return r, nil
}

// seccompSupported checks that the kernel has seccomp filters and that
// the filters assemble for this architecture.
func seccompSupported() error {
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return err
	}
	for _, l := range sandbox.Levels {
		if _, err := seccompFilter(l); err != nil {
			return err
		}
	}
	return nil
}

// Name implements sandbox.Runtime.
func (r *Runtime) Name() string { return "native" }

// Report describes the mechanisms in use.
func (r *Runtime) Report() Report { return r.report }

// Close kills the warm inits, removes their cgroups and stops the egress
// bridges. Runs in progress finish; Run after Close fails.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	pools := r.pools
	bridges := r.bridges
	r.mu.Unlock()
	r.inflight.Wait()
	for _, p := range pools {
		p.drain()
	}
	for _, b := range bridges {
		b.close()
	}
	return r.exe.Close()
}

// reap waits, in the background, for a finished init to exit (and with
// it every namespace of the run), then removes its cgroups and closes its
// pipes. Close waits for all of them.
func (r *Runtime) reap(ip *initProc) {
	r.inflight.Add(1)
	go func() {
		defer r.inflight.Done()
		err := <-ip.waitCh
		ip.waitCh <- err
		ip.closeFiles()
		if ip.cg != nil {
			ip.cg.destroy()
		}
	}()
}

// initThreadSlack is added to pids.max for the init's own threads.
const initThreadSlack = 32

// killGrace is how long after the wall-clock limit the parent waits for
// the init to report before killing it (and with it the namespace).
const killGrace = 2 * time.Second

// hold registers an operation that Close must wait for; false once closed.
func (r *Runtime) hold() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.inflight.Add(1)
	return true
}

// Run implements sandbox.Runtime.
func (r *Runtime) Run(ctx context.Context, spec *sandbox.Spec) (*sandbox.Result, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if !r.hold() {
		return nil, fmt.Errorf("%w: runtime closed", sandbox.ErrUnavailable)
	}
	defer r.inflight.Done()
	level, _ := sandbox.ParseLevel(string(spec.Level))
	limits := spec.Limits.WithDefaults(level.Defaults())
	if r.cg == nil && !r.cfg.AllowDegraded {
		return nil, fmt.Errorf("%w: cgroups are required for memory and process limits", sandbox.ErrUnavailable)
	}
	layout, err := r.layoutOf(spec)
	if err != nil {
		return nil, err
	}
	ip, err := r.take(layout)
	if err != nil {
		return nil, err
	}
	res, err := ip.run(ctx, r, spec, level, limits)
	// Replace the used init after the run, not during it: starting one
	// costs more CPU than a short run and would compete with it.
	if ip.pool != nil {
		ip.pool.refill()
	}
	return res, err
}

// layout is what a warm init is prepared with: the mounts, the work dir
// and the network. Runs with the same layout share a pool.
type layout struct {
	key     string
	mounts  []sandbox.Mount // spec mounts (system paths come from Config)
	workDir string
	proxy   string // egress proxy address, "" for no network
}

func (r *Runtime) layoutOf(spec *sandbox.Spec) (*layout, error) {
	l := &layout{workDir: spec.Dir, mounts: spec.Mounts}
	if l.workDir == "" {
		l.workDir = "/work"
	}
	if spec.Network.Mode == sandbox.NetworkProxy {
		l.proxy = spec.Network.ProxyAddr
	}
	var b strings.Builder
	fmt.Fprintf(&b, "dir=%s proxy=%s", l.workDir, l.proxy)
	ms := make([]string, 0, len(spec.Mounts))
	for _, m := range spec.Mounts {
		ms = append(ms, fmt.Sprintf("%s>%s:%v", m.Source, m.Target, m.Writable))
	}
	sort.Strings(ms)
	for _, m := range ms {
		b.WriteString(" " + m)
	}
	l.key = b.String()
	return l, nil
}

// take returns a warm init for the layout, or starts one.
func (r *Runtime) take(l *layout) (*initProc, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: runtime closed", sandbox.ErrUnavailable)
	}
	p := r.pools[l.key]
	if p == nil && r.cfg.PoolSize > 0 && len(r.pools) < maxPools {
		p = &pool{r: r, layout: l, ch: make(chan *initProc, r.cfg.PoolSize)}
		r.pools[l.key] = p
	}
	r.mu.Unlock()
	if p != nil {
		if ip := p.get(); ip != nil {
			ip.pool = p
			return ip, nil
		}
	}
	ip, err := r.start(l)
	if ip != nil {
		ip.pool = p
	}
	return ip, err
}

// Prewarm fills the warm pool for spec's mount layout and returns when it
// is full (or ctx is done): a gateway can prewarm at start so that the
// first calls are warm too.
func (r *Runtime) Prewarm(ctx context.Context, spec *sandbox.Spec) error {
	if r.cfg.PoolSize <= 0 {
		return nil
	}
	if !r.hold() {
		return fmt.Errorf("%w: runtime closed", sandbox.ErrUnavailable)
	}
	defer r.inflight.Done()
	l, err := r.layoutOf(spec)
	if err != nil {
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("%w: runtime closed", sandbox.ErrUnavailable)
	}
	p := r.pools[l.key]
	if p == nil {
		if len(r.pools) >= maxPools {
			r.mu.Unlock()
			return nil
		}
		p = &pool{r: r, layout: l, ch: make(chan *initProc, r.cfg.PoolSize)}
		r.pools[l.key] = p
	}
	r.mu.Unlock()
	for len(p.ch) < cap(p.ch) {
		p.refill()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// pool keeps warm inits of one layout.
type pool struct {
	r         *Runtime
	layout    *layout
	ch        chan *initProc
	refilling atomic.Bool
	// last holds the cgroup limits of the latest run: warm inits get them
	// in advance, so that a run with the same limits writes nothing.
	last atomic.Pointer[cgroupLimits]
}

func (p *pool) get() *initProc {
	for {
		select {
		case ip := <-p.ch:
			if ip.alive() {
				return ip
			}
			ip.discard()
		default:
			return nil
		}
	}
}

// refill starts inits in the background until the pool is full.
func (p *pool) refill() {
	if !p.refilling.CompareAndSwap(false, true) {
		return
	}
	p.r.mu.Lock()
	if p.r.closed {
		p.r.mu.Unlock()
		p.refilling.Store(false)
		return
	}
	p.r.inflight.Add(1)
	p.r.mu.Unlock()
	go func() {
		defer p.r.inflight.Done()
		defer p.refilling.Store(false)
		for len(p.ch) < cap(p.ch) {
			p.r.mu.Lock()
			closed := p.r.closed
			p.r.mu.Unlock()
			if closed {
				return
			}
			ip, err := p.r.start(p.layout)
			if err != nil {
				p.r.log.Warn("warm sandbox init failed", "err", err)
				return
			}
			if l := p.last.Load(); l != nil && ip.cg != nil {
				if err := ip.cg.setLimits(*l); err == nil {
					ip.applied = *l
				}
			}
			select {
			case p.ch <- ip:
			default:
				ip.discard()
				return
			}
		}
	}()
}

func (p *pool) drain() {
	for {
		select {
		case ip := <-p.ch:
			ip.discard()
		default:
			return
		}
	}
}

// initProc is a started init waiting for its run.
type initProc struct {
	cmd     *exec.Cmd
	ctl     *os.File // control pipe, write end
	status  *os.File // status pipe, read end
	stdin   *os.File // write end
	stdout  *os.File // read end
	stderr  *os.File // read end
	cg      *cgroup
	applied cgroupLimits // limits already written to cg
	pool    *pool        // the pool of its layout, if any
	waitCh  chan error
	started time.Time
}

func (ip *initProc) alive() bool {
	select {
	case err := <-ip.waitCh:
		ip.waitCh <- err
		return false
	default:
		return true
	}
}

// discard kills an unused init and releases everything it holds.
func (ip *initProc) discard() {
	_ = ip.cmd.Process.Kill()
	<-ip.waitCh
	ip.closeFiles()
	if ip.cg != nil {
		ip.cg.destroy()
	}
}

func (ip *initProc) closeFiles() {
	for _, f := range []*os.File{ip.ctl, ip.status, ip.stdin, ip.stdout, ip.stderr} {
		f.Close()
	}
}

// start launches an init for the layout and sends it its base spec.
func (r *Runtime) start(l *layout) (ip *initProc, err error) {
	base := &baseSpec{WorkDir: l.workDir}
	var extra []*os.File // descriptors from firstExtraFD on
	defer func() {
		for _, f := range extra {
			f.Close()
		}
	}()
	add := func(f *os.File) int {
		extra = append(extra, f)
		return firstExtraFD + len(extra) - 1
	}
	for _, p := range r.cfg.ReadOnlyPaths {
		m, f, err := openMount(p, p, false, true)
		if err != nil {
			return nil, err
		}
		if f != nil {
			m.FD = add(f)
		}
		if m.Target != "" {
			base.Mounts = append(base.Mounts, m)
		}
	}
	for _, sm := range l.mounts {
		t := sm.Target
		if t == "" {
			t = sm.Source
		}
		m, f, err := openMount(sm.Source, t, sm.Writable, false)
		if err != nil {
			return nil, err
		}
		m.FD = add(f)
		base.Mounts = append(base.Mounts, m)
	}
	var cg *cgroup
	if r.cg != nil {
		if cg, err = r.cg.create(fmt.Sprintf("run-%d-%d", os.Getpid(), cgroupSeq.Add(1))); err != nil {
			return nil, fmt.Errorf("%w: %w", sandbox.ErrSetup, err)
		}
		defer func() {
			if err != nil {
				cg.destroy()
			}
		}()
	}
	if l.proxy != "" {
		b, err := r.bridge(l.proxy)
		if err != nil {
			return nil, err
		}
		f, err := b.socketFile()
		if err != nil {
			return nil, err
		}
		base.ProxyFD = add(f)
	}
	if cg != nil {
		f, err := os.OpenFile(filepath.Join(cg.dirs["pids"].base, "pids.max"), os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", sandbox.ErrSetup, err)
		}
		base.PidsMaxFD = add(f)
	}
	if testCoverDir != "" && testInitCoverDir != "" {
		d, err := os.Open(testInitCoverDir)
		if err != nil {
			return nil, err
		}
		base.CoverFD = add(d)
	}
	exe, err := dupFile(r.exe)
	if err != nil {
		return nil, err
	}
	exeFD := add(exe)

	pipes := make([]*os.File, 0, 10)
	defer func() {
		if err != nil {
			for _, f := range pipes {
				f.Close()
			}
		}
	}()
	pipe := func() (*os.File, *os.File, error) {
		a, b, err := os.Pipe()
		if err == nil {
			pipes = append(pipes, a, b)
		}
		return a, b, err
	}
	ctlR, ctlW, err := pipe()
	if err != nil {
		return nil, err
	}
	statR, statW, err := pipe()
	if err != nil {
		return nil, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		return nil, err
	}
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: setupHostID, Size: 1}, {ContainerID: SandboxUID, HostID: programHostID, Size: 1}}
	cmd := &exec.Cmd{
		Path:       fmt.Sprintf("/proc/self/fd/%d", exeFD),
		Args:       []string{"portcullis-sandbox-init", InitArg},
		Env:        []string{}, // nothing of the gateway's environment
		Stdin:      inR,
		Stdout:     outW,
		Stderr:     errW,
		ExtraFiles: append([]*os.File{ctlR, statW}, extra...),
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
				unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP,
			UidMappings:                ids,
			GidMappings:                ids,
			GidMappingsEnableSetgroups: true,
			Credential:                 &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
			Pdeathsig:                  syscall.SIGKILL,
		},
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start init: %w", sandbox.ErrSetup, err)
	}
	for _, f := range []*os.File{ctlR, statW, inR, outW, errW} {
		f.Close()
	}
	// The init joins the run's cgroups now, before it forks anything (a
	// warm init pays the migration, which on cgroup v1 waits for an RCU
	// grace period, before its run is known); everything it starts
	// inherits them. It is never the OOM killer's choice.
	if err := joinInit(cmd.Process.Pid, cg); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%w: %w", sandbox.ErrSetup, err)
	}
	ip = &initProc{cmd: cmd, ctl: ctlW, status: statR, stdin: inW, stdout: outR, stderr: errR,
		cg: cg, waitCh: make(chan error, 1), started: time.Now()}
	go func() { ip.waitCh <- cmd.Wait() }()
	line, _ := json.Marshal(base)
	if _, err := ip.ctl.Write(append(line, '\n')); err != nil {
		ip.cg = nil // destroyed by the deferred cleanup
		ip.discard()
		return nil, fmt.Errorf("%w: send base spec: %w", sandbox.ErrSetup, err)
	}
	return ip, nil
}

func joinInit(pid int, cg *cgroup) error {
	if cg == nil {
		return nil
	}
	for _, f := range cg.procs {
		if _, err := f.WriteString(strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("init joins cgroup: %w", err)
		}
	}
	return nil
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// openMount prepares one mount: a detached clone of the source's mount
// tree (open_tree), flagged here where the gateway has its own rights —
// read-only unless writable, nosuid, nodev — for the init to move into
// place (a plain bind from a descriptor of another mount namespace is
// refused by the kernel). For a system path that is a symlink on the host
// it returns the link to recreate; a missing system path is skipped
// (empty Target); a missing Spec mount is an error.
func openMount(source, target string, writable, system bool) (initMount, *os.File, error) {
	if system {
		fi, err := os.Lstat(source)
		if errors.Is(err, os.ErrNotExist) {
			return initMount{}, nil, nil
		}
		if err != nil {
			return initMount{}, nil, err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			link, err := os.Readlink(source)
			if err != nil {
				return initMount{}, nil, err
			}
			return initMount{Target: target, Link: link}, nil, nil
		}
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return initMount{}, nil, fmt.Errorf("%w: mount source %s: %w", sandbox.ErrInvalidSpec, source, err)
	}
	f := os.NewFile(uintptr(fd), source)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if !writable {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		f.Close()
		return initMount{}, nil, fmt.Errorf("mount source %s: set attributes: %w", source, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return initMount{}, nil, err
	}
	return initMount{Target: target, IsDir: st.Mode&unix.S_IFMT == unix.S_IFDIR, Writable: writable}, f, nil
}

// run gives the init its run and collects the result.
func (ip *initProc) run(ctx context.Context, r *Runtime, spec *sandbox.Spec, level sandbox.Level, limits sandbox.Limits) (*sandbox.Result, error) {
	finished := false
	defer func() {
		if !finished { // failed before the run started: nothing to report
			ip.discard()
		}
	}()
	if ip.cg != nil {
		// The init is in the groups too: its few MiB count against the
		// memory limit; pids.max here has room for its threads and is made
		// exact by the init just before the program starts (setPidsMax).
		want := cgroupLimits{memory: limits.MemoryBytes, pids: limits.Pids + initThreadSlack, cpus: limits.CPUs}
		if ip.pool != nil {
			ip.pool.last.Store(&want)
		}
		if want != ip.applied {
			if err := ip.cg.setLimits(want); err != nil {
				return nil, fmt.Errorf("%w: %w", sandbox.ErrSetup, err)
			}
			ip.applied = want
		}
	}
	var filter []byte
	if r.report.Seccomp {
		var err error
		if filter, err = encodedFilter(level); err != nil {
			return nil, err
		}
	}
	rs := runSpec{
		Argv: spec.Argv, Env: spec.Env, Dir: spec.Dir,
		TmpSize: spec.TmpSizeBytes, WorkSize: spec.WorkSizeBytes,
		Wall: limits.WallTime, Level: string(level), Filter: filter, NoSeccomp: !r.report.Seccomp,
		FSize: uint64(limits.FileSizeBytes), NoFile: uint64(limits.OpenFiles), NProc: uint64(limits.Pids),
		Pids: limits.Pids,
	}
	if ip.cg == nil && limits.MemoryBytes > 0 { // degraded: no memory cgroup
		rs.ASBytes = uint64(limits.MemoryBytes)
	}
	if ip.cg != nil && limits.Pids > 0 {
		// The cgroup limit is the one that refuses (and counts the refusal);
		// the rlimit stands behind it (see setPidsMax).
		rs.NProc = uint64(limits.Pids + nprocSlack)
	}
	if rs.TmpSize <= 0 {
		rs.TmpSize = r.cfg.DefaultTmpSize
	}
	if rs.WorkSize <= 0 {
		rs.WorkSize = r.cfg.DefaultWorkSize
	}
	if limits.CPUTime > 0 {
		rs.CPUSecs = uint64((limits.CPUTime + time.Second - 1) / time.Second)
	}
	if spec.Network.Mode == sandbox.NetworkProxy {
		proxy := fmt.Sprintf("http://127.0.0.1:%d", egressPort)
		rs.Env = append(append([]string{}, rs.Env...), "HTTP_PROXY="+proxy, "HTTPS_PROXY="+proxy,
			"http_proxy="+proxy, "https_proxy="+proxy)
	}
	for _, f := range spec.Files {
		rs.Files = append(rs.Files, initFile{Name: f.Name, Data: f.Data, Mode: f.Mode})
	}
	line, err := json.Marshal(rs)
	if err != nil {
		return nil, fmt.Errorf("%w: encode run: %w", sandbox.ErrSetup, err)
	}
	finished = true
	// From here on the init cleans up after itself in the background once
	// it has exited (its namespaces' teardown costs milliseconds nobody
	// needs to wait for).
	defer func() { r.reap(ip) }()
	start := time.Now()
	stdout := &cappedBuffer{max: limits.OutputBytes}
	stderr := &cappedBuffer{max: limits.OutputBytes}
	var outW, errW io.Writer = stdout, stderr
	var in io.Reader = bytes.NewReader(spec.Stdin)
	if spec.Stdio != nil {
		outW, errW = spec.Stdio.Stdout, spec.Stdio.Stderr
		if spec.Stdio.Stdin != nil {
			in = spec.Stdio.Stdin
		}
	}
	go func() {
		_, _ = ip.ctl.Write(append(line, '\n'))
		_, _ = io.Copy(ip.stdin, in)
		ip.stdin.Close()
	}()
	var copies sync.WaitGroup
	for _, c := range []struct {
		dst io.Writer
		src *os.File
	}{{outW, ip.stdout}, {errW, ip.stderr}} {
		copies.Add(1)
		go func() {
			defer copies.Done()
			_, _ = io.Copy(c.dst, c.src)
		}()
	}
	statusCh := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(ip.status, 1<<20))
		statusCh <- b
	}()

	res := &sandbox.Result{}
	backstop := time.NewTimer(limits.WallTime + killGrace)
	defer backstop.Stop()
	var raw []byte
	select {
	case raw = <-statusCh: // the init reported (or died)
	case <-ctx.Done():
		_ = ip.cmd.Process.Kill()
		raw = <-statusCh
		res.Violations = append(res.Violations, sandbox.Violation{Code: sandbox.ViolationCancelled, Detail: ctx.Err().Error()})
	case <-backstop.C:
		_ = ip.cmd.Process.Kill()
		raw = <-statusCh
		res.Violations = append(res.Violations, sandbox.Violation{Code: sandbox.ViolationWallTimeout, Detail: "init did not report in time"})
	}
	// Every process of the sandbox is gone and the init closed its copies:
	// the output pipes have no writer left.
	copies.Wait()
	res.WallTime = time.Since(start)
	res.Stdout, res.StdoutTruncated = stdout.result()
	res.Stderr, res.StderrTruncated = stderr.result()
	if testCoverDir != "" && testInitCoverDir != "" {
		<-ip.waitCh // the init writes its coverage data on its way out
		ip.waitCh <- nil
		if err := collectCoverage(ip.cmd.Process.Pid); err != nil {
			r.log.Warn("collecting sandbox init coverage", "err", err)
		}
	}
	var st initStatus
	if len(raw) == 0 || json.Unmarshal(raw, &st) != nil {
		if len(res.Violations) > 0 { // killed by us: a normal outcome
			res.ExitCode, res.Signal = -1, "SIGKILL"
			return res, nil
		}
		return nil, fmt.Errorf("%w: init exited without status", sandbox.ErrSetup)
	}
	if st.SetupError != "" {
		return nil, fmt.Errorf("%w: %s", sandbox.ErrSetup, st.SetupError)
	}
	res.ExitCode = st.ExitCode
	res.CPUTime = time.Duration(st.CPUNanos)
	res.PeakMemoryBytes = st.MaxRSSKB * 1024
	if st.Signal != 0 {
		res.Signal = unix.SignalName(syscall.Signal(st.Signal))
	}
	var cgo cgroupOutcome
	if ip.cg != nil {
		cgo = ip.cg.outcome()
		if cgo.peakMemory > 0 {
			res.PeakMemoryBytes = cgo.peakMemory
		}
	}
	res.Violations = append(res.Violations, violations(limits, &st, res, cgo)...)
	return res, nil
}

// violations derives the limits a finished run hit.
func violations(l sandbox.Limits, st *initStatus, res *sandbox.Result, cg cgroupOutcome) []sandbox.Violation {
	var v []sandbox.Violation
	add := func(c sandbox.ViolationCode, detail string) {
		v = append(v, sandbox.Violation{Code: c, Detail: detail})
	}
	switch {
	case st.TimedOut:
		add(sandbox.ViolationWallTimeout, fmt.Sprintf("wall-clock limit %s", l.WallTime))
	case cg.oomKills > 0:
		add(sandbox.ViolationOOM, fmt.Sprintf("memory limit %d bytes: %d processes killed", l.MemoryBytes, cg.oomKills))
	case st.Signal == int(syscall.SIGXCPU) || (st.Signal == int(syscall.SIGKILL) && l.CPUTime > 0 && res.CPUTime >= l.CPUTime):
		add(sandbox.ViolationCPUTimeout, fmt.Sprintf("CPU limit %s", l.CPUTime))
	case st.Signal == int(syscall.SIGXFSZ):
		add(sandbox.ViolationFileSize, fmt.Sprintf("file size limit %d bytes", l.FileSizeBytes))
	case st.Signal == int(syscall.SIGSYS):
		add(sandbox.ViolationSeccompKill, "system call refused by the sandbox's seccomp filter")
	case st.Signal != 0:
		add(sandbox.ViolationSignalled, res.Signal)
	}
	if cg.oomKills > 0 && st.TimedOut {
		add(sandbox.ViolationOOM, fmt.Sprintf("memory limit %d bytes", l.MemoryBytes))
	}
	if cg.pidsLimited > 0 {
		add(sandbox.ViolationPidsExhausted, fmt.Sprintf("process limit %d reached %d times", l.Pids, cg.pidsLimited))
	}
	if res.StdoutTruncated || res.StderrTruncated {
		add(sandbox.ViolationOutputTrunc, fmt.Sprintf("output beyond %d bytes discarded", l.OutputBytes))
	}
	if st.Orphans > 0 {
		add(sandbox.ViolationOrphansKilled, fmt.Sprintf("%d processes left running were killed", st.Orphans))
	}
	return v
}
