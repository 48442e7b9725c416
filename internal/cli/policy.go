package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"ipfs-cluster/internal/policy"
)

// errPolicyFailed ends `policy check` and `policy test` with exit code 1
// after the report, which already says what is wrong.
var errPolicyFailed = errors.New("")

// policyCommand checks and dry-runs Lua policy files without a daemon; it
// loads them exactly as the daemon does. Reloading a running peer's policy
// is `ctl policy reload`.
func policyCommand() *Command {
	jsonFlag := Flag{Name: "json", Kind: BoolFlag, Usage: "print the report as JSON"}
	return &Command{
		Name:  "policy",
		Usage: "check and dry-run Lua policy files",
		Description: `
A policy is the Lua file named by cluster.policy_file in service.json. These
commands load it the way the daemon does. See docs/policies.md for the hook
contract. Running peers reload their policy on SIGHUP or with
'ipfs-cluster ctl policy reload'.`,
		Subcommands: []*Command{
			{
				Name:      "check",
				Usage:     "check a policy: syntax, hooks found, sandbox violations",
				ArgsUsage: "FILE",
				Flags:     []Flag{jsonFlag},
				Action: func(c *Context) error {
					if len(c.Args) != 1 {
						return Usagef("policy check takes one FILE, got %d arguments", len(c.Args))
					}
					report, err := policy.Check(c.Args[0])
					return printPolicyReport(c, report, err == nil)
				},
			},
			{
				Name:      "test",
				Usage:     "call every hook of a policy once and print each answer",
				ArgsUsage: "FILE",
				Description: `
Calls admit, replication, allocate and retry_priority with the pin given as
JSON (the API's pin fields: cid, name, mode, replication_factor_min,
replication_factor_max, user_allocations, metadata, expire_at, ...) and,
for allocate, the candidates given as a JSON array of
{id, peername, tags, freespace, pinqueue, numpin, current, priority} in
the built-in order. Each line says what the hook answered and what the
daemon does with that answer.`,
				Flags: []Flag{
					{Name: "pin", Kind: StringFlag, Usage: "the pin, as JSON (required)"},
					{Name: "candidates", Kind: StringFlag, Default: "[]", Usage: "the allocation candidates, as a JSON array"},
					{Name: "attempts", Kind: IntFlag, Default: "1", Usage: "retry_priority's attempt count"},
					{Name: "error", Kind: StringFlag, Default: "dry run", Usage: "retry_priority's last error text"},
					{Name: "timeout", Kind: DurationFlag, Default: policy.DefaultTimeout.String(), Usage: "time budget of one hook call (cluster.policy_timeout)"},
					jsonFlag,
				},
				Action: policyTest,
			},
		},
	}
}

func policyTest(c *Context) error {
	if len(c.Args) != 1 {
		return Usagef("policy test takes one FILE, got %d arguments", len(c.Args))
	}
	if !c.IsSet("pin") {
		return Usagef("policy test needs --pin '<json>'")
	}
	pin, err := policy.ParsePin([]byte(c.String("pin")))
	if err != nil {
		return Usagef("--pin: %v", err)
	}
	cands, err := policy.ParseCandidates([]byte(c.String("candidates")))
	if err != nil {
		return Usagef("--candidates: %v", err)
	}
	quiet := zerolog.Nop()
	p, err := policy.Load(c.Args[0], policy.Options{Timeout: c.Duration("timeout"), Logger: &quiet, PoolSize: 1})
	if err != nil {
		report, _ := policy.Check(c.Args[0])
		return printPolicyReport(c, report, false)
	}
	report := policy.DryRunWith(context.Background(), p, policy.DryRunInput{
		Pin: pin, Candidates: cands, Attempts: c.Int("attempts"), LastError: c.String("error"),
	})
	return printPolicyReport(c, report, report.OK)
}

// printPolicyReport prints r as text or JSON and turns a failed report into
// exit code 1.
func printPolicyReport(c *Context, r policy.Report, ok bool) error {
	if c.Bool("json") {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		fmt.Fprintf(c.Stdout, "%s\n", b)
	} else if err := r.Write(c.Stdout); err != nil {
		return err
	}
	if !ok {
		return Exit(1, errPolicyFailed)
	}
	return nil
}
