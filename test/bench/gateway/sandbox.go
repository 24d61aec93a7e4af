package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// sandboxTable is where scripts/bench-sandbox.sh leaves its table.
const sandboxTable = "bench-sandbox.txt"

// benchSandbox runs scripts/bench-sandbox.sh (bare vs Portcullis cold and
// warm vs bwrap, /bin/true and python3 -c pass) and parses its table.
// The script needs root; without it the section is skipped with a note.
func benchSandbox(ctx context.Context, o *options, res *Result) error {
	if os.Geteuid() != 0 {
		res.Notes = append(res.Notes, "sandbox section skipped: scripts/bench-sandbox.sh needs root")
		return nil
	}
	progress("sandbox: scripts/bench-sandbox.sh, RUNS=%d", o.sandboxRuns)
	_ = os.Remove(sandboxTable)
	cmd := exec.CommandContext(ctx, "scripts/bench-sandbox.sh")
	cmd.Env = append(os.Environ(), "RUNS="+strconv.Itoa(o.sandboxRuns), "GO="+o.goCmd)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return err
	}
	b, err := os.ReadFile(sandboxTable)
	if err != nil {
		return err
	}
	s, err := parseSandbox(string(b))
	if err != nil {
		return err
	}
	res.Sandbox = s
	return nil
}

var (
	cellSep   = regexp.MustCompile(`\s{2,}`)
	runsRE    = regexp.MustCompile(`(\d+) runs each`)
	msCell    = regexp.MustCompile(`^(-?[\d.]+)ms$`)
	ratioCell = regexp.MustCompile(`^([\d.]+)x$`)
)

// parseSandbox reads the right-aligned table of test/bench/sandbox:
// program, mode, p50, p99[, overhead p50, overhead p99[, vs bwrap p50]].
func parseSandbox(text string) (*SandboxSection, error) {
	s := &SandboxSection{}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) > 0 {
		s.Title = strings.TrimSpace(lines[0])
		if m := runsRE.FindStringSubmatch(s.Title); m != nil {
			s.Runs, _ = strconv.Atoi(m[1])
		}
	}
	for _, line := range lines[1:] {
		cells := cellSep.Split(strings.TrimSpace(line), -1)
		if len(cells) < 4 || cells[0] == "program" {
			continue
		}
		p50, ok1 := ms(cells[2])
		p99, ok2 := ms(cells[3])
		if !ok1 || !ok2 {
			continue // "(bwrap not installed)"
		}
		row := SandboxRow{Program: cells[0], Mode: cells[1], P50MS: p50, P99MS: p99}
		if len(cells) >= 6 {
			if v, ok := ms(cells[4]); ok {
				row.OverheadP50MS = &v
			}
			if v, ok := ms(cells[5]); ok {
				row.OverheadP99MS = &v
			}
		}
		if len(cells) >= 7 {
			if m := ratioCell.FindStringSubmatch(cells[6]); m != nil {
				v, _ := strconv.ParseFloat(m[1], 64)
				row.VsBwrap = &v
			}
		}
		s.Rows = append(s.Rows, row)
	}
	if len(s.Rows) == 0 {
		return nil, fmt.Errorf("no rows in %s", sandboxTable)
	}
	return s, nil
}

func ms(cell string) (float64, bool) {
	m := msCell.FindStringSubmatch(cell)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// sandboxRow finds a row by program and mode.
func (s *SandboxSection) row(program, mode string) *SandboxRow {
	if s == nil {
		return nil
	}
	for i := range s.Rows {
		if s.Rows[i].Program == program && s.Rows[i].Mode == mode {
			return &s.Rows[i]
		}
	}
	return nil
}
