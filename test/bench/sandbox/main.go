// Command sandbox measures the native sandbox's overhead side by side with
// what a user would use instead, in one run (issue 3; DESIGN §6 targets:
// p50 ≤ 3 ms and p99 ≤ 10 ms over a bare run, no slower than bubblewrap
// with equivalent isolation):
//
//	bare        exec of the program, no isolation
//	cold        Portcullis native runtime, every run starts a fresh init
//	warm        Portcullis native runtime from its warm pool
//	bwrap       bubblewrap with the same namespaces, a read-only /usr,
//	            private /proc, /dev, /tmp and work dir, uid 65534, no
//	            capabilities, and Portcullis' own maximum-level seccomp
//	            filter (cgroups, Landlock and the memfd init are extra
//	            work bwrap does not do)
//
// for /bin/true and python3 -c pass. Run it with `make bench-sandbox`
// (root; installs bubblewrap from Debian if missing).
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/sandbox/native"
)

var systemPaths = []string{"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache"}

type sample []time.Duration

func (s sample) pct(p float64) time.Duration {
	c := slices.Clone(s)
	slices.Sort(c)
	i := int(p*float64(len(c)-1) + 0.5)
	return c[i]
}

func main() {
	native.Main()
	n := flag.Int("n", 200, "runs per measurement")
	flag.Parse()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	cold, err := native.New(native.Config{ReadOnlyPaths: systemPaths, PoolSize: -1}, log)
	if err != nil {
		fatal(err)
	}
	defer cold.Close()
	warm, err := native.New(native.Config{ReadOnlyPaths: systemPaths, PoolSize: 2}, log)
	if err != nil {
		fatal(err)
	}
	defer warm.Close()
	filterFile, err := writeFilter()
	if err != nil {
		fatal(err)
	}
	defer os.Remove(filterFile)
	bwrap, bwrapErr := exec.LookPath("bwrap")

	programs := []struct {
		name string
		argv []string
	}{
		{"/bin/true", []string{"/bin/true"}},
		{"python3 -c pass", []string{"/usr/bin/python3", "-c", "pass"}},
	}
	fmt.Printf("Sandbox overhead, %d runs each, %s, %d CPUs, %s\n\n", *n, kernel(), cpus(), time.Now().UTC().Format(time.RFC3339))
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "program\tmode\tp50\tp99\toverhead p50\toverhead p99\tvs bwrap p50\t")
	for _, prog := range programs {
		spec := func() *sandbox.Spec {
			return &sandbox.Spec{Argv: prog.argv, Env: []string{"PATH=/usr/bin:/bin"}, Level: sandbox.LevelMaximum}
		}
		bare := measure(*n, func() error { return exec.Command(prog.argv[0], prog.argv[1:]...).Run() })
		c := measure(*n, func() error { return runOK(cold.Run(ctx, spec())) })
		wm := measure(*n, func() error {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := warm.Prewarm(pctx, spec()); err != nil {
				return err
			}
			return nil
		}, func() error { return runOK(warm.Run(ctx, spec())) })
		var bw sample
		if bwrapErr == nil {
			bw = measure(*n, func() error { return bwrapRun(bwrap, filterFile, prog.argv) })
		}
		rows := []struct {
			mode string
			s    sample
		}{{"bare", bare}, {"portcullis cold", c}, {"portcullis warm", wm}, {"bwrap", bw}}
		for _, r := range rows {
			if r.s == nil {
				fmt.Fprintf(w, "%s\t%s\t(bwrap not installed)\t\t\t\t\t\n", prog.name, r.mode)
				continue
			}
			vs := ""
			if bw != nil && r.mode != "bare" {
				vs = fmt.Sprintf("%.2fx", float64(r.s.pct(0.5))/float64(bw.pct(0.5)))
			}
			over50, over99 := "", ""
			if r.mode != "bare" {
				over50 = ms(r.s.pct(0.5) - bare.pct(0.5))
				over99 = ms(r.s.pct(0.99) - bare.pct(0.99))
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", prog.name, r.mode, ms(r.s.pct(0.5)), ms(r.s.pct(0.99)), over50, over99, vs)
		}
	}
	w.Flush()
}

// measure times fn n times; an optional prepare runs before each timing.
func measure(n int, fns ...func() error) sample {
	fn := fns[len(fns)-1]
	var prepare func() error
	if len(fns) > 1 {
		prepare = fns[0]
	}
	out := make(sample, 0, n)
	for range n {
		if prepare != nil {
			if err := prepare(); err != nil {
				fatal(err)
			}
		}
		start := time.Now()
		if err := fn(); err != nil {
			fatal(err)
		}
		out = append(out, time.Since(start))
	}
	return out
}

func runOK(res *sandbox.Result, err error) error {
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("exit %d %v: %s", res.ExitCode, res.Violations, res.Stderr)
	}
	return nil
}

// writeFilter stores Portcullis' maximum-level seccomp filter in bwrap's
// --seccomp format (raw struct sock_filter array).
func writeFilter() (string, error) {
	f, err := os.CreateTemp("", "portcullis-seccomp-*.bpf")
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, ins := range native.SeccompFilter(sandbox.LevelMaximum) {
		var b [8]byte
		binary.LittleEndian.PutUint16(b[0:], ins.Code)
		b[2], b[3] = ins.Jt, ins.Jf
		binary.LittleEndian.PutUint32(b[4:], ins.K)
		if _, err := f.Write(b[:]); err != nil {
			return "", err
		}
	}
	return f.Name(), nil
}

func bwrapRun(bwrap, filter string, argv []string) error {
	ff, err := os.Open(filter)
	if err != nil {
		return err
	}
	defer ff.Close()
	args := []string{
		"--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
		"--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
		"--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
		"--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin", "--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache",
		"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/work", "--chdir", "/work",
		"--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
		"--seccomp", "3", "--",
	}
	cmd := exec.Command(bwrap, append(args, argv...)...)
	cmd.ExtraFiles = []*os.File{ff}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("bwrap: %v: %s", err, out)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return "Linux " + strings.TrimSpace(string(b))
}

func cpus() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "sandbox bench:", err)
	os.Exit(1)
}
