//go:build linux

package native

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cgroups bound what a program uses in total, across every process it
// starts: memory (no swap), process and thread count, CPU bandwidth. Hosts
// differ: cgroup v2 (unified), v1, or a hybrid where some controllers live
// on v1 hierarchies and the unified one holds others (this project's CI
// machine: memory, pids and cpu on v1). Each controller is found where it
// is actually mounted, never assumed.

// cgroupControllers are the controllers the runtime uses.
var cgroupControllers = []string{"memory", "pids", "cpu"}

// controllerDir is where sandbox cgroups of one controller are created.
type controllerDir struct {
	v2   bool
	base string // <mount>/<gateway's own cgroup>/portcullis
}

// cgroupInfo says, per controller, where it is mounted and at which version.
type cgroupInfo struct {
	dirs    map[string]controllerDir // controller -> dir; missing controllers are absent
	missing []string
}

// CgroupReport describes the host's cgroup setup (for doctor).
type CgroupReport struct {
	// Controllers maps each controller to "v1", "v2" or "missing".
	Controllers map[string]string
	// Base is where sandbox cgroups are created, per controller.
	Base map[string]string
}

type cgMount struct {
	point string
	v2    bool
	opts  []string // v1 super options (controller names)
}

func readCgroupMounts() ([]cgMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []cgMount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 0 || sep+3 >= len(fields) || len(fields) < 5 {
			continue
		}
		switch fields[sep+1] {
		case "cgroup2":
			out = append(out, cgMount{point: fields[4], v2: true})
		case "cgroup":
			out = append(out, cgMount{point: fields[4], opts: strings.Split(fields[sep+3], ",")})
		}
	}
	return out, sc.Err()
}

// ownCgroups parses /proc/self/cgroup: v1 controller -> path, and the v2 path.
func ownCgroups() (v1 map[string]string, v2 string, err error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, "", err
	}
	v1 = map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			v1[c] = parts[2]
		}
	}
	return v1, v2, nil
}

// detectCgroups finds each controller. A controller on a v1 hierarchy is
// used there; otherwise it must be available in the unified hierarchy.
func detectCgroups() (*cgroupInfo, error) {
	mounts, err := readCgroupMounts()
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	v1paths, v2path, err := ownCgroups()
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	ci := &cgroupInfo{dirs: map[string]controllerDir{}}
	var unified string
	for _, m := range mounts {
		if m.v2 && unified == "" {
			unified = m.point
		}
	}
	for _, c := range cgroupControllers {
		found := false
		for _, m := range mounts {
			if !m.v2 && slices.Contains(m.opts, c) {
				own := v1paths[c]
				ci.dirs[c] = controllerDir{base: filepath.Join(m.point, own, "portcullis")}
				found = true
				break
			}
		}
		if !found && unified != "" {
			own := filepath.Join(unified, v2path)
			if b, err := os.ReadFile(filepath.Join(own, "cgroup.controllers")); err == nil && slices.Contains(strings.Fields(string(b)), c) {
				ci.dirs[c] = controllerDir{v2: true, base: filepath.Join(own, "portcullis")}
				found = true
			}
		}
		if !found {
			ci.missing = append(ci.missing, c)
		}
	}
	return ci, nil
}

// Report describes the detected setup.
func (ci *cgroupInfo) Report() CgroupReport {
	r := CgroupReport{Controllers: map[string]string{}, Base: map[string]string{}}
	for _, c := range cgroupControllers {
		d, ok := ci.dirs[c]
		switch {
		case !ok:
			r.Controllers[c] = "missing"
		case d.v2:
			r.Controllers[c] = "v2"
			r.Base[c] = d.base
		default:
			r.Controllers[c] = "v1"
			r.Base[c] = d.base
		}
	}
	return r
}

// prepare creates the portcullis parent groups (and, on v2, enables the
// controllers for them). It fails if any controller is missing.
func (ci *cgroupInfo) prepare() error {
	if len(ci.missing) > 0 {
		return fmt.Errorf("cgroup controllers missing: %s", strings.Join(ci.missing, ", "))
	}
	enabled := map[string]bool{}
	for _, c := range cgroupControllers {
		d := ci.dirs[c]
		if err := os.MkdirAll(d.base, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", c, err)
		}
		if d.v2 && !enabled[d.base] {
			// Children of base get the controllers. (base itself never
			// holds processes, so the no-internal-process rule holds.)
			var list []string
			for _, c2 := range cgroupControllers {
				if cd := ci.dirs[c2]; cd.v2 && cd.base == d.base {
					list = append(list, "+"+c2)
				}
			}
			if err := enableV2(filepath.Dir(d.base), list); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(d.base, "cgroup.subtree_control"), []byte(strings.Join(list, " ")), 0); err != nil {
				return fmt.Errorf("cgroup v2: enable %v in %s: %w", list, d.base, err)
			}
			enabled[d.base] = true
		}
	}
	return nil
}

// enableV2 enables controllers in dir's subtree_control, as delegation
// requires for dir's children.
func enableV2(dir string, list []string) error {
	err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(list, " ")), 0)
	if err != nil {
		return fmt.Errorf("cgroup v2: enable %v in %s (the gateway's own cgroup must allow delegation): %w", list, dir, err)
	}
	return nil
}

// cgroupLimits are the limits a sandbox cgroup enforces.
type cgroupLimits struct {
	memory int64   // bytes, 0 = unlimited
	pids   int     // 0 = unlimited
	cpus   float64 // CPU bandwidth in cores, 0 = unlimited
}

// cgroup is one sandbox's group in every controller.
type cgroup struct {
	dirs  map[string]controllerDir // controller -> its dir (base is the run's dir here)
	procs []*os.File               // cgroup.procs of each distinct dir, open for writing
}

// create makes the groups for one sandbox and opens their cgroup.procs
// files (the program joins by writing "0" to them before exec; the open
// descriptors carry the gateway's credentials).
func (ci *cgroupInfo) create(name string) (*cgroup, error) {
	cg := &cgroup{dirs: map[string]controllerDir{}}
	opened := map[string]bool{}
	for _, c := range cgroupControllers {
		d := ci.dirs[c]
		dir := filepath.Join(d.base, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			cg.destroy()
			return nil, fmt.Errorf("cgroup %s: %w", c, err)
		}
		cg.dirs[c] = controllerDir{v2: d.v2, base: dir}
		if opened[dir] {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
		if err != nil {
			cg.destroy()
			return nil, fmt.Errorf("cgroup %s: %w", c, err)
		}
		opened[dir] = true
		cg.procs = append(cg.procs, f)
	}
	return cg, nil
}

func writeCG(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("cgroup %s/%s: %w", filepath.Base(dir), file, err)
	}
	return nil
}

// setLimits writes the limits.
func (cg *cgroup) setLimits(l cgroupLimits) error {
	mem, pids, cpu := cg.dirs["memory"], cg.dirs["pids"], cg.dirs["cpu"]
	if l.memory > 0 {
		v := strconv.FormatInt(l.memory, 10)
		if mem.v2 {
			if err := writeCG(mem.base, "memory.max", v); err != nil {
				return err
			}
			if err := writeCG(mem.base, "memory.swap.max", "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		} else {
			// v1 keeps memsw >= the memory limit at every step: a limit
			// above the current memsw limit (a warm group set for a
			// smaller run) is refused with EINVAL until memsw is raised.
			if err := writeCG(mem.base, "memory.limit_in_bytes", v); err != nil {
				if !errors.Is(err, syscall.EINVAL) {
					return err
				}
				if e := writeCG(mem.base, "memory.memsw.limit_in_bytes", v); e != nil {
					return err
				}
				if err := writeCG(mem.base, "memory.limit_in_bytes", v); err != nil {
					return err
				}
			}
			// No swap either (absent when swap accounting is off).
			if err := writeCG(mem.base, "memory.memsw.limit_in_bytes", v); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	if l.pids > 0 {
		if err := writeCG(pids.base, "pids.max", strconv.Itoa(l.pids)); err != nil {
			return err
		}
	}
	if l.cpus > 0 {
		const period = 100000
		quota := int64(l.cpus * period)
		if cpu.v2 {
			if err := writeCG(cpu.base, "cpu.max", fmt.Sprintf("%d %d", quota, period)); err != nil {
				return err
			}
		} else {
			if err := writeCG(cpu.base, "cpu.cfs_period_us", strconv.Itoa(period)); err != nil {
				return err
			}
			if err := writeCG(cpu.base, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)); err != nil {
				return err
			}
		}
	}
	return nil
}

// cgroupOutcome is what the groups observed during a run.
type cgroupOutcome struct {
	oomKills    int64
	pidsLimited int64 // forks refused at pids.max
	peakMemory  int64
}

// keyedValue returns the value of key in a "key value" lines file.
func keyedValue(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// outcome reads OOM kills, refused forks and peak memory.
func (cg *cgroup) outcome() cgroupOutcome {
	var o cgroupOutcome
	mem, pids := cg.dirs["memory"], cg.dirs["pids"]
	if mem.v2 {
		o.oomKills = keyedValue(filepath.Join(mem.base, "memory.events"), "oom_kill")
		o.peakMemory = readInt(filepath.Join(mem.base, "memory.peak"))
	} else {
		o.oomKills = keyedValue(filepath.Join(mem.base, "memory.oom_control"), "oom_kill")
		o.peakMemory = readInt(filepath.Join(mem.base, "memory.max_usage_in_bytes"))
	}
	o.pidsLimited = keyedValue(filepath.Join(pids.base, "pids.events"), "max")
	return o
}

// destroy closes the procs files and removes the groups. All processes
// must have exited; a group still busy is retried briefly.
func (cg *cgroup) destroy() {
	for _, f := range cg.procs {
		f.Close()
	}
	seen := map[string]bool{}
	for _, d := range cg.dirs {
		if seen[d.base] {
			continue
		}
		seen[d.base] = true
		for i := 0; i < 50; i++ {
			err := os.Remove(d.base)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}
