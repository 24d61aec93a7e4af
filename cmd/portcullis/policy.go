package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/internal/adminapi"
	"github.com/portcullis/portcullis/internal/policy"
)

// maxPolicyFile caps one Cedar file read by `policy check`: the
// gateway's own bound.
const maxPolicyFile = policy.MaxPolicyFileBytes

func newPolicyCmd(g *globalFlags) *cobra.Command {
	af := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "List, reload, test and check Cedar policies",
		Long: `Work with the Cedar policies that add conditions to role grants (on
arguments, time, tool attributes). "list", "reload" and "test" talk to the
running gateway's admin API (--server URL; the admin key comes from
PORTCULLIS_ADMIN_KEY or <data-dir>/admin.key); "check" works offline on
files.`,
	}
	af.register(cmd)

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the Cedar policies in force and the policy mode",
		Long: `List the Cedar policies in force on the gateway — id, file, effect (permit
or forbid) and whether it has conditions — and the mode: enforce (denials
refuse calls) or report (denials are only recorded as policy.would_deny).`,
		Example: "  portcullis policy list\n  portcullis policy list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			v, err := c.ListPolicies(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if listJSON {
				return json.NewEncoder(out).Encode(v)
			}
			fmt.Fprintf(out, "mode: %s\n", v.Mode)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tFILE\tEFFECT\tCONDITIONAL")
			for _, p := range v.Policies {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%t\n", p.ID, p.File, p.Effect, p.Conditional)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	reload := &cobra.Command{
		Use:   "reload",
		Short: "Make the gateway re-read its policy files and role grants",
		Long: `Make the gateway re-read its Cedar policy files and role grants and swap
them in atomically. If a file does not parse, the error names the file and
position and the previous policies stay in force. Run "portcullis policy
check" on the files first to catch errors before they reach the gateway.`,
		Example: "  portcullis policy reload",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client(g)
			if err != nil {
				return err
			}
			n, err := c.ReloadPolicies(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reloaded: %d policies in force\n", n)
			return nil
		},
	}

	var tUser, tTool, tArgs string
	var tJSON bool
	test := &cobra.Command{
		Use:   "test --user USER --tool TOOL [--args JSON]",
		Short: "Ask what the gateway would decide for a user calling a tool",
		Long: `Ask the gateway what it would decide if USER called TOOL with the given
arguments (a JSON object), exactly as a real call would be decided, without
running anything. Prints ALLOW or DENY, the rule that decided and the ids
of the Cedar policies that matched.

The exit status is 0 whenever the question was answered, whatever the
decision; it is non-zero only on errors (unknown user, bad arguments, the
gateway unreachable).`,
		Example: `  portcullis policy test --user alice --tool read_file --args '{"path":"README.md"}'
  portcullis policy test --user ci --tool http_fetch --args '{"url":"http://169.254.169.254/"}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tUser == "" || tTool == "" {
				return errors.New("--user and --tool are required")
			}
			req := adminapi.PolicyTestRequest{User: tUser, Tool: tTool}
			if tArgs != "" {
				var obj map[string]any
				if err := json.Unmarshal([]byte(tArgs), &obj); err != nil || obj == nil {
					return errors.New(`--args must be a JSON object such as '{"path":"README.md"}'`)
				}
				req.Args = json.RawMessage(tArgs)
			}
			c, err := af.client(g)
			if err != nil {
				return err
			}
			res, err := c.TestPolicy(cmd.Context(), req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if tJSON {
				return json.NewEncoder(out).Encode(res)
			}
			verdict := "DENY"
			if res.Allow {
				verdict = "ALLOW"
			}
			fmt.Fprintf(out, "%s\nrule: %s\n", verdict, res.Rule)
			if len(res.Policies) > 0 {
				fmt.Fprintf(out, "policies: %s\n", strings.Join(res.Policies, ", "))
			}
			return nil
		},
	}
	test.Flags().StringVar(&tUser, "user", "", "user name")
	test.Flags().StringVar(&tTool, "tool", "", "tool name, e.g. read_file or notes__search")
	test.Flags().StringVar(&tArgs, "args", "", "the call's arguments as a JSON object")
	test.Flags().BoolVar(&tJSON, "json", false, "print JSON")

	check := &cobra.Command{
		Use:   "check FILE|DIR...",
		Short: "Check Cedar policy files offline",
		Long: fmt.Sprintf(`Parse Cedar policy files without a running gateway, as the gateway would
load them together: a directory argument stands for every *.cedar file in
it, exactly as the gateway reads its policy directory (not subdirectories,
not hidden files). Each file may be at most %d bytes.

On success prints "ok: N policies (ids, sorted)" and exits 0. On the first error
prints it — naming the file and position — and exits non-zero.`, maxPolicyFile),
		Example: "  portcullis policy check examples/policies\n  portcullis policy check my.cedar other.cedar",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := readPolicyFiles(args)
			if err != nil {
				return err
			}
			set, err := policy.ParseCedar(files)
			if err != nil {
				return err
			}
			info := set.Info()
			ids := make([]string, 0, len(info))
			for _, p := range info {
				ids = append(ids, p.ID)
			}
			slices.Sort(ids) // stable output whatever order the parser yields
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d policies (%s)\n", len(ids), strings.Join(ids, ", "))
			return nil
		},
	}

	cmd.AddCommand(list, reload, test, check)
	return cmd
}

// readPolicyFiles reads the named files and, through policy.ReadDir (the
// gateway's own loader), the policy files of the named directories
// (path → content). Each file must be a regular file of at most
// maxPolicyFile bytes; a directory without .cedar files is an error, so
// that a typo does not pass as "0 policies".
func readPolicyFiles(args []string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, arg := range args {
		st, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			if err := readPolicyFile(files, arg); err != nil {
				return nil, err
			}
			continue
		}
		dir, _, err := policy.ReadDir(arg)
		if err != nil {
			return nil, err
		}
		if len(dir) == 0 {
			return nil, fmt.Errorf("%s: no .cedar files in the directory", arg)
		}
		for name, b := range dir {
			files[filepath.Join(arg, name)] = b
		}
	}
	return files, nil
}

func readPolicyFile(files map[string][]byte, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPolicyFile+1))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxPolicyFile {
		return fmt.Errorf("%s: larger than %d bytes (1 MiB), the limit for a policy file", name, maxPolicyFile)
	}
	files[name] = b
	return nil
}
