package gateway

import "time"

// SetCancelGrace sets cancelGrace for a test and returns a restore func.
func SetCancelGrace(d time.Duration) func() {
	old := cancelGrace
	cancelGrace = d
	return func() { cancelGrace = old }
}
