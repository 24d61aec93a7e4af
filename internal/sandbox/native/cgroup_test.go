//go:build linux

package native

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// The cgroup code against a fake cgroupfs (plain directories): the file
// names and values written for each version, and how outcomes are read.
// This host has only v1 controllers; these tests pin the v2 side too.
// (The real v1 groups are checked live by TestLevelDefaultsEnforced.)

func readFiles(t *testing.T, dir string, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			out[n] = "absent"
			continue
		}
		out[n] = string(b)
	}
	return out
}

// TestCgroupSetLimitsV2 writes memory.max (and no swap), pids.max and
// cpu.max into one unified group.
func TestCgroupSetLimitsV2(t *testing.T) {
	dir := t.TempDir()
	d := controllerDir{v2: true, base: dir}
	cg := &cgroup{dirs: map[string]controllerDir{"memory": d, "pids": d, "cpu": d}}
	if err := cg.setLimits(cgroupLimits{memory: 64 << 20, pids: 10, cpus: 0.5}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"memory.max": "67108864", "memory.swap.max": "0", "pids.max": "10", "cpu.max": "50000 100000"}
	if diff := cmp.Diff(want, readFiles(t, dir, "memory.max", "memory.swap.max", "pids.max", "cpu.max")); diff != "" {
		t.Errorf("v2 limits (-want +got):\n%s", diff)
	}
}

// TestCgroupSetLimitsV1 writes the v1 files, one hierarchy per
// controller; zero limits write nothing.
func TestCgroupSetLimitsV1(t *testing.T) {
	mem, pids, cpu := t.TempDir(), t.TempDir(), t.TempDir()
	cg := &cgroup{dirs: map[string]controllerDir{"memory": {base: mem}, "pids": {base: pids}, "cpu": {base: cpu}}}
	if err := cg.setLimits(cgroupLimits{memory: 32 << 20, pids: 7, cpus: 1.5}); err != nil {
		t.Fatal(err)
	}
	got := readFiles(t, mem, "memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
	for k, v := range readFiles(t, pids, "pids.max") {
		got[k] = v
	}
	for k, v := range readFiles(t, cpu, "cpu.cfs_period_us", "cpu.cfs_quota_us") {
		got[k] = v
	}
	want := map[string]string{"memory.limit_in_bytes": "33554432", "memory.memsw.limit_in_bytes": "33554432",
		"pids.max": "7", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "150000"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("v1 limits (-want +got):\n%s", diff)
	}

	empty := t.TempDir()
	e := &cgroup{dirs: map[string]controllerDir{"memory": {base: empty}, "pids": {base: empty}, "cpu": {base: empty}}}
	if err := e.setLimits(cgroupLimits{}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("zero limits wrote %d files", len(ents))
	}
	gone := &cgroup{dirs: map[string]controllerDir{"memory": {base: filepath.Join(empty, "gone")}}}
	if err := gone.setLimits(cgroupLimits{memory: 1 << 20}); err == nil {
		t.Errorf("setLimits into a missing group succeeded")
	}
}

// TestCgroupOutcome reads OOM kills, refused forks and peak memory from
// each version's files; missing files read as zero.
func TestCgroupOutcome(t *testing.T) {
	v2 := t.TempDir()
	for name, content := range map[string]string{
		"memory.events": "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n",
		"memory.peak":   "1234567\n",
		"pids.events":   "max 3\n",
	} {
		if err := os.WriteFile(filepath.Join(v2, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := controllerDir{v2: true, base: v2}
	got := (&cgroup{dirs: map[string]controllerDir{"memory": d, "pids": d}}).outcome()
	if want := (cgroupOutcome{oomKills: 2, pidsLimited: 3, peakMemory: 1234567}); got != want {
		t.Errorf("v2 outcome %+v, want %+v", got, want)
	}

	mem, pids := t.TempDir(), t.TempDir()
	for path, content := range map[string]string{
		filepath.Join(mem, "memory.oom_control"):        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
		filepath.Join(mem, "memory.max_usage_in_bytes"): "999\n",
		filepath.Join(pids, "pids.events"):              "max 0\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got = (&cgroup{dirs: map[string]controllerDir{"memory": {base: mem}, "pids": {base: pids}}}).outcome()
	if want := (cgroupOutcome{oomKills: 1, peakMemory: 999}); got != want {
		t.Errorf("v1 outcome %+v, want %+v", got, want)
	}

	missing := t.TempDir()
	got = (&cgroup{dirs: map[string]controllerDir{"memory": {base: missing}, "pids": {base: missing}}}).outcome()
	if got != (cgroupOutcome{}) {
		t.Errorf("outcome without files %+v, want zero", got)
	}
}

// TestCgroupPrepareV2 creates the portcullis parent and enables the
// controllers for it and for its children (delegation); a host missing a
// controller is refused.
func TestCgroupPrepareV2(t *testing.T) {
	own := t.TempDir()
	base := filepath.Join(own, "portcullis")
	d := controllerDir{v2: true, base: base}
	ci := &cgroupInfo{dirs: map[string]controllerDir{"memory": d, "pids": d, "cpu": d}}
	if err := ci.prepare(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"own":  readFiles(t, own, "cgroup.subtree_control")["cgroup.subtree_control"],
		"base": readFiles(t, base, "cgroup.subtree_control")["cgroup.subtree_control"],
	}
	want := map[string]string{"own": "+memory +pids +cpu", "base": "+memory +pids +cpu"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("subtree_control (-want +got):\n%s", diff)
	}
	rep := ci.Report()
	if diff := cmp.Diff(map[string]string{"memory": "v2", "pids": "v2", "cpu": "v2"}, rep.Controllers); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}

	partial := &cgroupInfo{dirs: map[string]controllerDir{"memory": {base: t.TempDir()}}, missing: []string{"pids", "cpu"}}
	if err := partial.prepare(); err == nil || !strings.Contains(err.Error(), "pids, cpu") {
		t.Errorf("prepare with missing controllers: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"memory": "v1", "pids": "missing", "cpu": "missing"}, partial.Report().Controllers); diff != "" {
		t.Errorf("report with missing controllers (-want +got):\n%s", diff)
	}

	// Delegation refused: the gateway's own group does not let the
	// controllers be enabled for its children.
	refused := t.TempDir()
	if err := os.Mkdir(filepath.Join(refused, "cgroup.subtree_control"), 0o755); err != nil {
		t.Fatal(err)
	}
	rd := controllerDir{v2: true, base: filepath.Join(refused, "portcullis")}
	err := (&cgroupInfo{dirs: map[string]controllerDir{"memory": rd, "pids": rd, "cpu": rd}}).prepare()
	if err == nil || !strings.Contains(err.Error(), "delegation") {
		t.Errorf("prepare without delegation: %v, want an error naming delegation", err)
	}
}

// TestCgroupCreateFails cleans up when a group cannot be used (here: a
// plain directory has no cgroup.procs) and reports which controller.
func TestCgroupCreateFails(t *testing.T) {
	base := t.TempDir()
	ci := &cgroupInfo{dirs: map[string]controllerDir{"memory": {base: base}, "pids": {base: base}, "cpu": {base: base}}}
	cg, err := ci.create("run-x")
	if err == nil || cg != nil || !strings.Contains(err.Error(), "cgroup memory") {
		t.Fatalf("create = %v, %v; want an error for the memory controller", cg, err)
	}
	if _, err := os.Stat(filepath.Join(base, "run-x")); !os.IsNotExist(err) {
		t.Errorf("the half-made group was left behind: %v", err)
	}
}

// TestNewFailsClosed refuses to start without a usable init binary, even
// with AllowDegraded (which tolerates a missing memfd copy, not a
// missing program).
func TestNewFailsClosed(t *testing.T) {
	for _, degraded := range []bool{false, true} {
		rt, err := New(Config{ReadOnlyPaths: systemPaths, Executable: "/nonexistent/portcullis", AllowDegraded: degraded},
			slog.New(slog.DiscardHandler))
		if !errors.Is(err, sandbox.ErrUnavailable) {
			if rt != nil {
				rt.Close()
			}
			t.Errorf("New with a missing executable (AllowDegraded=%v): %v, want ErrUnavailable", degraded, err)
		}
	}
}
