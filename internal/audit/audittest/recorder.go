package audittest

import (
	"context"
	"sync"

	"github.com/portcullis/portcullis/internal/audit"
)

// Recorder is an emitter for tests that keeps a copy of every event.
// Safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

// Emit implements the emitter interfaces of the gateway and its parts.
func (r *Recorder) Emit(_ context.Context, e *audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, *e)
	return nil
}

// Of returns the recorded events of type t, or all of them for "".
func (r *Recorder) Of(t audit.Type) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, e := range r.events {
		if t == "" || e.Type == t {
			out = append(out, e)
		}
	}
	return out
}
