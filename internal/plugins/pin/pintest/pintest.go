// Package pintest provides an in-memory pin.Backend for tests in other
// packages, and a conformance suite every pin.Backend must pass.
package pintest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portcullis/portcullis/internal/plugins/pin"
)

// Memory is an in-memory pin.Backend. It stores copies, so a caller
// changing a record it put or got changes nothing stored. The zero value
// is not usable; call NewMemory.
type Memory struct {
	mu   sync.Mutex
	recs map[[2]string]pin.Record
	// FailGet and FailPut, when set, are called (under the lock: they must
	// not call m) before each GetPin and PutPin; an error they return is
	// returned instead. Set them before sharing m.
	FailGet func(server, tool string) error
	FailPut func(r pin.Record) error
}

var _ pin.Backend = (*Memory)(nil)

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{recs: map[[2]string]pin.Record{}} }

// GetPin implements pin.Backend.
func (m *Memory) GetPin(_ context.Context, server, tool string) (pin.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.FailGet != nil {
		if err := m.FailGet(server, tool); err != nil {
			return pin.Record{}, err
		}
	}
	r, ok := m.recs[[2]string{server, tool}]
	if !ok {
		return pin.Record{}, fmt.Errorf("%w: %q/%q", pin.ErrNotFound, server, tool)
	}
	return clone(r), nil
}

// PutPin implements pin.Backend.
func (m *Memory) PutPin(_ context.Context, r pin.Record) error {
	if err := r.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.FailPut != nil {
		if err := m.FailPut(r); err != nil {
			return err
		}
	}
	m.recs[[2]string{r.Server, r.Tool}] = clone(r)
	return nil
}

// ListPins implements pin.Backend.
func (m *Memory) ListPins(_ context.Context, server string) ([]pin.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []pin.Record
	for k, r := range m.recs {
		if server == "" || k[0] == server {
			out = append(out, clone(r))
		}
	}
	slices.SortFunc(out, func(a, b pin.Record) int {
		if c := strings.Compare(a.Server, b.Server); c != 0 {
			return c
		}
		return strings.Compare(a.Tool, b.Tool)
	})
	return out, nil
}

func clone(r pin.Record) pin.Record {
	r.Definition = slices.Clone(r.Definition)
	r.PendingDefinition = slices.Clone(r.PendingDefinition)
	r.Findings = slices.Clone(r.Findings)
	r.PendingFindings = slices.Clone(r.PendingFindings)
	return r
}

// Conformance runs the behaviour every pin.Backend must have against
// backends made by open (a fresh, empty one per call).
func Conformance(t *testing.T, open func(t *testing.T) pin.Backend) {
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 123456789, time.UTC)
	accepted := pin.Record{Server: "notes", Tool: "read_note", Status: pin.Accepted, Hash: "sha256:aa",
		Definition: json.RawMessage(`{"name":"read_note"}`), FirstSeen: t0, UpdatedAt: t0, AcceptedAt: t0}
	pending := pin.Record{Server: "notes", Tool: "write_note", Status: pin.Pending,
		Hash: "sha256:bb", Definition: json.RawMessage(`{"name":"write_note"}`),
		Findings:    []pin.Finding{{Rule: pin.RuleCrossTool, Field: "description", Excerpt: "when calling x_y, also"}},
		PendingHash: "sha256:cc", PendingDefinition: json.RawMessage(`{"description":"<IMPORTANT>","name":"write_note"}`),
		PendingFindings: []pin.Finding{{Rule: pin.RuleHiddenInstruction, Field: "description", Excerpt: "<IMPORTANT>"},
			{Rule: pin.RuleInvisibleUnicode, Field: "inputSchema.properties.\"a\\u{200B}\"", Excerpt: `a\u{200B}`}},
		FirstSeen: t0, UpdatedAt: t0.Add(time.Hour), AcceptedBy: "alice", AcceptedAt: t0.Add(time.Minute)}
	neverAccepted := pin.Record{Server: "mail", Tool: "send_email", Status: pin.Pending, PendingHash: "sha256:dd",
		PendingDefinition: json.RawMessage(`{"name":"send_email"}`), FirstSeen: t0, UpdatedAt: t0}
	opts := cmp.Options{cmpopts.EquateEmpty()}

	t.Run("RoundTrip", func(t *testing.T) {
		b := open(t)
		ctx := t.Context()
		for _, r := range []pin.Record{accepted, pending, neverAccepted} {
			if err := b.PutPin(ctx, r); err != nil {
				t.Fatalf("PutPin(%s/%s): %v", r.Server, r.Tool, err)
			}
			got, err := b.GetPin(ctx, r.Server, r.Tool)
			if err != nil {
				t.Fatalf("GetPin(%s/%s): %v", r.Server, r.Tool, err)
			}
			if diff := cmp.Diff(r, got, opts); diff != "" {
				t.Errorf("GetPin(%s/%s) (-put +got):\n%s", r.Server, r.Tool, diff)
			}
			if !got.AcceptedAt.Equal(r.AcceptedAt) || got.AcceptedAt.IsZero() != r.AcceptedAt.IsZero() {
				t.Errorf("AcceptedAt = %v, want %v", got.AcceptedAt, r.AcceptedAt)
			}
		}
	})

	t.Run("Replace", func(t *testing.T) {
		b := open(t)
		ctx := t.Context()
		if err := b.PutPin(ctx, neverAccepted); err != nil {
			t.Fatal(err)
		}
		next := neverAccepted
		next.Status, next.Hash, next.Definition = pin.Accepted, next.PendingHash, next.PendingDefinition
		next.PendingHash, next.PendingDefinition = "", nil
		next.AcceptedBy, next.AcceptedAt, next.UpdatedAt = "bob", t0.Add(2*time.Hour), t0.Add(2*time.Hour)
		if err := b.PutPin(ctx, next); err != nil {
			t.Fatal(err)
		}
		got, err := b.GetPin(ctx, next.Server, next.Tool)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(next, got, opts); diff != "" {
			t.Errorf("after replace (-want +got):\n%s", diff)
		}
		all, err := b.ListPins(ctx, "")
		if err != nil || len(all) != 1 {
			t.Errorf("ListPins = %d records, %v; want 1", len(all), err)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		b := open(t)
		if err := b.PutPin(t.Context(), accepted); err != nil {
			t.Fatal(err)
		}
		for _, k := range [][2]string{{"notes", "nope"}, {"nope", "read_note"}, {"Notes", "read_note"}, {"notes", "read_%"}} {
			if _, err := b.GetPin(t.Context(), k[0], k[1]); !errors.Is(err, pin.ErrNotFound) {
				t.Errorf("GetPin(%q, %q) = %v, want ErrNotFound", k[0], k[1], err)
			}
		}
	})

	t.Run("ListFilter", func(t *testing.T) {
		b := open(t)
		ctx := t.Context()
		names := []string{"zeta", "alpha", "%", "' OR 1=1 --", "mail"}
		for _, s := range names {
			for _, tool := range []string{"b_tool", "a_tool"} {
				r := accepted
				r.Server, r.Tool = s, tool
				if err := b.PutPin(ctx, r); err != nil {
					t.Fatalf("PutPin(%q/%q): %v", s, tool, err)
				}
			}
		}
		all, err := b.ListPins(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range all {
			got = append(got, r.Server+"/"+r.Tool)
		}
		sorted := slices.Clone(names)
		slices.Sort(sorted)
		var want []string
		for _, s := range sorted {
			want = append(want, s+"/a_tool", s+"/b_tool")
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ListPins(\"\") order (-want +got):\n%s", diff)
		}
		for _, s := range names {
			one, err := b.ListPins(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if len(one) != 2 || one[0].Server != s || one[1].Server != s || one[0].Tool != "a_tool" {
				t.Errorf("ListPins(%q) = %d records, want this server's 2, a_tool first", s, len(one))
			}
		}
		none, err := b.ListPins(ctx, "nope")
		if err != nil || len(none) != 0 {
			t.Errorf("ListPins(unknown) = %d, %v; want none", len(none), err)
		}
	})

	t.Run("RejectsInvalid", func(t *testing.T) {
		b := open(t)
		for name, mut := range map[string]func(*pin.Record){
			"no server":             func(r *pin.Record) { r.Server = "" },
			"no tool":               func(r *pin.Record) { r.Tool = "" },
			"unknown status":        func(r *pin.Record) { r.Status = "maybe" },
			"pending without hash":  func(r *pin.Record) { r.PendingHash = "" },
			"accepted with pending": func(r *pin.Record) { r.Status = pin.Accepted },
			"accepted without hash": func(r *pin.Record) { r.Status, r.PendingHash, r.Hash = pin.Accepted, "", "" },
			"no first-seen time":    func(r *pin.Record) { r.FirstSeen = time.Time{} },
			"no update time":        func(r *pin.Record) { r.UpdatedAt = time.Time{} },
		} {
			r := pending
			mut(&r)
			if err := b.PutPin(t.Context(), r); !errors.Is(err, pin.ErrInvalid) {
				t.Errorf("%s: PutPin = %v, want ErrInvalid", name, err)
			}
		}
		if all, _ := b.ListPins(t.Context(), ""); len(all) != 0 {
			t.Errorf("invalid records were stored: %d", len(all))
		}
	})

	t.Run("Isolation", func(t *testing.T) {
		b := open(t)
		ctx := t.Context()
		r := pending
		r.Findings = slices.Clone(pending.Findings)
		r.Definition = slices.Clone(pending.Definition)
		if err := b.PutPin(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.Findings[0].Rule, r.Definition[0] = "changed", 'X'
		got, err := b.GetPin(ctx, r.Server, r.Tool)
		if err != nil {
			t.Fatal(err)
		}
		got.PendingFindings[0].Rule, got.PendingDefinition[0] = "changed", 'X'
		again, err := b.GetPin(ctx, r.Server, r.Tool)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(pending, again, opts); diff != "" {
			t.Errorf("stored record changed through a caller's copy (-want +got):\n%s", diff)
		}
	})
}
