package plugins

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/audit/audittest"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/plugins/pin"
	"github.com/portcullis/portcullis/internal/plugins/pin/pintest"
	"github.com/portcullis/portcullis/internal/sandbox"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tool"
	"github.com/portcullis/portcullis/internal/violation"
)

type nopRegistry struct{}

func (nopRegistry) SetServerTools(string, []tool.Tool) error { return nil }

// TestSandboxKillsAreViolations: a server process killed by the sandbox
// (seccomp, OOM, pids, file size, CPU) is a HIGH sandbox_violation of the
// plugin; an ordinary exit or a kill by the gateway itself is not.
func TestSandboxKillsAreViolations(t *testing.T) {
	var got []store.Violation
	pins, _ := pin.New(pintest.NewMemory(), nil)
	m, err := New(Config{Servers: []config.ServerConfig{{Name: "fx", URL: "https://fx.test/mcp", SecurityLevel: "strict"}}},
		Deps{Registry: nopRegistry{}, Pins: pins, Audit: &audittest.Recorder{}, Logger: slog.New(slog.DiscardHandler),
			Violations: func(_ context.Context, v store.Violation) { got = append(got, v) }})
	if err != nil {
		t.Fatal(err)
	}
	s := m.servers["fx"]
	for _, c := range []sandbox.ViolationCode{sandbox.ViolationSeccompKill, sandbox.ViolationOOM, sandbox.ViolationPidsExhausted} {
		got = nil
		s.recordSandboxViolations(t.Context(), exitInfo{result: &sandbox.Result{ExitCode: -1, Signal: "SIGSYS",
			Violations: []sandbox.Violation{{Code: c}}}})
		if len(got) != 1 || got[0].Plugin != "fx" || got[0].Type != violation.SandboxViolation ||
			got[0].Severity != store.SeverityHigh || got[0].Principal != "" || !strings.Contains(got[0].Detail, string(c)) {
			t.Errorf("%s: violations %+v", c, got)
		}
	}
	got = nil
	for _, r := range []*sandbox.Result{{ExitCode: 3}, {ExitCode: -1, Signal: "SIGKILL",
		Violations: []sandbox.Violation{{Code: sandbox.ViolationCancelled}}}} {
		s.recordSandboxViolations(t.Context(), exitInfo{result: r})
	}
	if len(got) != 0 {
		t.Errorf("ordinary exits counted: %+v", got)
	}
	detail, status := s.describeExit(exitInfo{result: &sandbox.Result{ExitCode: -1, Signal: "SIGSYS",
		Violations: []sandbox.Violation{{Code: sandbox.ViolationSeccompKill}}}}, "")
	if !strings.Contains(detail, "signal=SIGSYS") || !strings.Contains(detail, "SECCOMP_KILL") || status != "error" {
		t.Errorf("describeExit: %q %q", detail, status)
	}
}

// lineLog records Info lines for stderrLog.
type lineLog struct{ lines []string }

func (l *lineLog) Info(msg string, args ...any) {
	l.lines = append(l.lines, fmt.Sprint(append([]any{msg}, args...)...))
}

// TestStderrLogRedactsAndBounds: a server printing its own secret to
// stderr (split across writes, inside a longer line) has it replaced
// before the line is logged; lines are cut at 1 KiB, an endless line is
// emitted in pieces, and at most limit lines a minute are logged with the
// rest counted.
func TestStderrLogRedactsAndBounds(t *testing.T) {
	secret := "tok-" + strings.Repeat("s3", 10)
	l := &lineLog{}
	w := newStderrLog(l, 5, []string{secret, "ab"}) // "ab" is too short to redact
	half := len(secret) / 2
	w.Write([]byte("leaking " + secret[:half]))
	w.Write([]byte(secret[half:] + " now; about\n" + strings.Repeat("x", 2000) + "\n"))
	if len(l.lines) != 2 || strings.Contains(l.lines[0], secret) || !strings.Contains(l.lines[0], "[REDACTED]") ||
		!strings.Contains(l.lines[0], "about") {
		t.Fatalf("lines %q: want the secret redacted and short values kept", l.lines)
	}
	if len(l.lines[1]) > maxStderrLine+64 {
		t.Fatalf("a 2,000-byte line was logged with %d bytes", len(l.lines[1]))
	}
	w.Write([]byte(strings.Repeat("y", 5*maxStderrLine)))
	for i := range 10 {
		fmt.Fprintf(w, "line %d\n", i)
	}
	w.flush()
	if n := len(l.lines); n != 6 || !strings.Contains(l.lines[n-1], "dropped") {
		t.Fatalf("%d lines, last %q: want 5 logged, then the dropped count", n, l.lines[n-1])
	}
}

// TestStderrLogSecretAcrossEndlessLineCut: an endless line is emitted in
// pieces; a secret that straddles the cut between two pieces is still
// redacted whole: no piece logs its first or last half, whatever the
// write sizes and wherever the secret lies around the cut.
func TestStderrLogSecretAcrossEndlessLineCut(t *testing.T) {
	secret := "ghp_" + strings.Repeat("Zq9", 12)
	head, tail := secret[:len(secret)/2], secret[len(secret)/2:]
	for _, at := range []int{4*maxStderrLine - 20, 4*maxStderrLine - 1, 4 * maxStderrLine, 4*maxStderrLine + 1} {
		for _, chunk := range []int{1, 7, 100, 4096} {
			l := &lineLog{}
			w := newStderrLog(l, 1000, []string{secret})
			// The piece emitted after the cut starts where the secret was
			// cut, so its first 1 KiB (what is logged) would show the rest.
			stream := []byte(strings.Repeat("x", at) + secret + strings.Repeat("y", 3*maxStderrLine) + secret + strings.Repeat("z", 6000))
			for len(stream) > 0 {
				n := min(chunk, len(stream))
				w.Write(stream[:n])
				stream = stream[n:]
			}
			w.flush()
			for _, line := range l.lines {
				if strings.Contains(line, head) || strings.Contains(line, tail) {
					t.Fatalf("secret at %d, writes of %d: a logged piece holds half the secret: %.120q", at, chunk, line)
				}
			}
		}
	}
}

// TestStderrLogLongAndRepeatedSecrets: a secret longer than the endless
// line's cut, or a shorter one repeated until redaction shrinks the buffer
// below what must be kept back, is redacted and never crashes the
// gateway (a slice out of range in the copy goroutine would).
func TestStderrLogLongAndRepeatedSecrets(t *testing.T) {
	long := strings.Repeat("K9x", 5000/3)    // 4,998 bytes, longer than the cut
	mid := "sk_" + strings.Repeat("m4", 150) // 303 bytes
	for _, tc := range []struct {
		name   string
		secret string
		stream string
	}{
		{"secret longer than the cut", long, "a" + long + strings.Repeat("b", 4097)},
		{"secret repeated on one line", mid, strings.Repeat(mid, 14) + strings.Repeat("c", 500)},
		{"secret repeated, then more", mid, strings.Repeat(mid+" ", 40) + strings.Repeat("d", 9000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{1, 64, 4096, 1 << 16} {
				l := &lineLog{}
				w := newStderrLog(l, 1000, []string{tc.secret})
				for s := tc.stream; len(s) > 0; {
					n := min(chunk, len(s))
					if _, err := w.Write([]byte(s[:n])); err != nil {
						t.Fatal(err)
					}
					s = s[n:]
				}
				w.flush()
				half := tc.secret[len(tc.secret)/2:]
				for _, line := range l.lines {
					if strings.Contains(line, half[:32]) {
						t.Fatalf("writes of %d: a logged line holds part of the secret: %.80q", chunk, line)
					}
				}
				if len(w.buf) > 0 {
					t.Fatalf("writes of %d: %d bytes left after flush", chunk, len(w.buf))
				}
			}
		})
	}
}

// TestStderrLogMultiLineSecret: a PEM key printed to stderr is logged line
// by line; each of its lines is redacted, none of its body shows.
func TestStderrLogMultiLineSecret(t *testing.T) {
	body := []string{strings.Repeat("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", 2), strings.Repeat("BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj", 2), "MgW2dAoGBAMJ"}
	pemKey := "-----BEGIN PRIVATE KEY-----\n" + strings.Join(body, "\n") + "\n-----END PRIVATE KEY-----\n"
	l := &lineLog{}
	w := newStderrLog(l, 1000, []string{pemKey, "tok-" + strings.Repeat("z", 20)})
	w.Write([]byte("loaded key:\n" + strings.ReplaceAll(pemKey, "\n", "\r\n") + "done\n"))
	w.flush()
	all := strings.Join(l.lines, "\n")
	for _, b := range body {
		if strings.Contains(all, b) {
			t.Errorf("a line of the key's body was logged: %q\n%s", b, all)
		}
	}
	if !strings.Contains(all, "loaded key") || !strings.Contains(all, "done") || strings.Count(all, "[REDACTED]") < len(body) {
		t.Errorf("log %q: want the surrounding lines kept and every key line redacted", all)
	}
}
