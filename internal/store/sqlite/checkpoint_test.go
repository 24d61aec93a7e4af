package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/audit/audittest"
	"github.com/portcullis/portcullis/internal/store/sqlite"
)

// TestBackgroundCheckpoint: the writer connection never checkpoints
// (wal_autocheckpoint 0), so without the background checkpointer the WAL
// would hold every page ever written. Writing ~16 MiB of audit records
// over a few checkpoint intervals must leave a WAL far smaller than that,
// and Close must leave the database complete without its WAL.
func TestBackgroundCheckpoint(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.db")
	db := openAt(t, path, nil)
	chain := audittest.Chain()
	big := json.RawMessage(`{"content":"` + strings.Repeat("x", 2000) + `"}`)
	const batches, perBatch = 40, 200
	for b := range batches {
		evs := make([]*audit.Event, perBatch)
		for i := range evs {
			evs[i] = &audit.Event{ID: fmt.Sprintf("evt_%03d_%03d", b, i), Time: time.Now(), Type: audit.ToolCallStart,
				Principal: "p", Tool: "write_file", Args: big, Status: audit.StatusStarted}
		}
		if err := db.AppendAudit(context.Background(), chain, evs); err != nil {
			t.Fatal(err)
		}
		time.Sleep(sqlite.CheckpointInterval / 4)
	}
	written := int64(batches * perBatch * len(big))
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > written/2 {
		t.Errorf("WAL is %d bytes after %d bytes of records: not checkpointed in the background", fi.Size(), written)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ro := openAt(t, path, nil)
	evs, err := ro.QueryAudit(context.Background(), audit.Query{Limit: 1})
	if err != nil || len(evs) != 1 || evs[0].Seq != batches*perBatch {
		t.Fatalf("after reopening: %d events, %v; want the last seq %d", len(evs), err, batches*perBatch)
	}
}
