// Command portcullis is the Portcullis MCP gateway.
//
//	portcullis serve     run the gateway (HTTP /mcp, admin API)
//	portcullis stdio     serve MCP on stdin/stdout as the configured local principal
//	portcullis key ...   manage API keys through the admin API
//	portcullis audit ... query the audit log through the admin API
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/portcullis/portcullis/internal/sandbox/native"
)

func main() {
	native.Main() // a re-executed sandbox init never returns from here
	if err := newRootCmd().Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "portcullis:", err)
		os.Exit(1)
	}
}

// exitError carries an exit code for a failure already reported.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }
