package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
)

// benchArgs are ~100 bytes of redacted tool arguments, a typical
// tool.call.start payload.
var benchArgs = json.RawMessage(`{"path":"src/internal/gateway/pipeline.go","offset":0,"limit":4096,"token":"hmac-sha256:9f2c1a"}`)

// BenchWriterGroupCommit measures durable audit records per second through
// the group-commit writer (the gateway's settings: queue 4096, batches of
// up to 512, 300 µs linger) into a fresh backend from open, at 1, 8 and 64
// concurrent writers (sub-benchmarks "writers=N"; `make bench` parses
// them). Each writer audits as its own principal and each Emit returns
// only once its transaction committed; b.N is the total number of records,
// reported as "records/s". Every backend's BenchmarkWriterGroupCommit
// calls it, so the figures compare.
func BenchWriterGroupCommit(b *testing.B, open func(b *testing.B) audit.Backend) {
	// Sealed into a named chain, as a replica on PostgreSQL does.
	chain, err := audittest.Chain().WithID("replica-a")
	if err != nil {
		b.Fatal(err)
	}
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			w, err := audit.NewWriter(audit.Config{QueueSize: 4096, MaxBatch: 512, CommitTimeout: 30 * time.Second,
				Linger: 300 * time.Microsecond, Chain: chain}, open(b), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				if err := w.Close(context.Background()); err != nil {
					b.Errorf("Close: %v", err)
				}
			})
			ctx := context.Background()
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for g := range writers {
				wg.Go(func() {
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						e := &audit.Event{
							Type: audit.ToolCallStart, Principal: fmt.Sprintf("user-%d", g), Roles: []string{"developer"},
							Session: "mcp-session-7f3a", RequestID: "req_" + audit.SortableID(time.Now()), RemoteAddr: "10.1.2.3:51234",
							Tool: "read_file", Server: "files", ArgsDigest: "hmac-sha256:4b227777d4dd1fc61c6f884f48641d02b4d121d3fd328cb08b5531fcacdabf8a",
							Args: benchArgs, Decision: audit.DecisionAllow, Status: audit.StatusStarted,
						}
						if err := w.Emit(ctx, e); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
