//go:build linux

package native

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/sandbox"
)

// TestConcurrentRunsIsolated starts 8 runs at once, each writing a file
// named after itself into /tmp and the work dir: all succeed and each
// sees only its own files.
func TestConcurrentRunsIsolated(t *testing.T) {
	const n = 8
	rt := newRuntime(t)
	var wg sync.WaitGroup
	outs := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec := atLevel(sandbox.LevelStrict, shSpec(`touch /tmp/run-$1 /work/run-$1 && sleep 0.2 && ls /tmp /work`))
			spec.Argv = append(spec.Argv, "sh", fmt.Sprint(i))
			res, err := rt.Run(t.Context(), spec)
			if err != nil {
				errs[i] = err
				return
			}
			if res.ExitCode != 0 || len(res.Violations) > 0 {
				errs[i] = fmt.Errorf("exit %d violations %v stderr %s", res.ExitCode, res.Violations, res.Stderr)
				return
			}
			outs[i] = string(res.Stdout)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("run %d: %v", i, errs[i])
			continue
		}
		want := fmt.Sprintf("/tmp:\nrun-%d\n\n/work:\nrun-%d\n", i, i)
		if diff := cmp.Diff(want, outs[i]); diff != "" {
			t.Errorf("run %d sees (-want +got):\n%s", i, diff)
		}
	}
}
