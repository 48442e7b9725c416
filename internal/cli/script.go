package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"ipfs-cluster/internal/policy"
	"ipfs-cluster/internal/script"
)

// scriptExitInterrupted is the exit code of a script stopped by SIGINT or
// SIGTERM, as a shell reports a process killed by SIGINT.
const scriptExitInterrupted = 130

// scriptClientFlags are ctl's flags that say how to reach the API (not its
// output encoding nor --version): a script talks to the API as ctl does.
func scriptClientFlags() []Flag {
	keep := map[string]bool{"host": true, "secret": true, "https": true, "no-check-certificate": true,
		"timeout": true, "debug": true, "basic-auth": true, "force-http": true}
	var out []Flag
	for _, f := range Ctl().Flags {
		if keep[f.Name] {
			out = append(out, f)
		}
	}
	return out
}

// scriptCommand is `ipfs-cluster script FILE [args...]`. It has
// subcommands (list, show) so that the flag parser stops at the first
// word: the flags before FILE are the command's, everything after FILE
// belongs to the script, "-x" and "--help" included.
func scriptCommand() *Command {
	return &Command{
		Name:      "script",
		Usage:     "run a Lua batch script against the REST API",
		ArgsUsage: "FILE [args...]",
		Description: `
Usage: ipfs-cluster script [options] FILE|NAME [args...]

Runs the Lua script FILE with the arguments that follow it (arg[1]... in
the script). Options go before FILE; everything after FILE is the
script's. A NAME without a file of that name runs a built-in script
(see 'ipfs-cluster script list'; 'ipfs-cluster script show NAME' prints
one to adapt).

Scripts run in the sandbox of policies (base, string, table and math; no
io, os or load) without a time budget, and require("cluster") talks to the
API given by --host as ctl does: pin, unpin, allocation, status, pins (a
streaming iterator), peers, id, lines (a local file of CIDs), sleep,
progress, warn and exit. See docs/policies.md.

A progress line appears on stderr during long runs. Exit status: 0 when
the script ends, 1 on a Lua error (printed as "Error: FILE.lua:LINE: ..."),
the code given to cluster.exit, 130 when interrupted.`,
		Flags: append(scriptClientFlags(),
			Flag{Name: "no-progress", Kind: BoolFlag, Usage: "do not show the progress line on stderr"},
			Flag{Name: "heap-limit", Kind: IntFlag, Default: strconv.Itoa(script.DefaultHeapLimit >> 20),
				Usage: "MiB of memory the script may fill before it is stopped"}),
		Subcommands: []*Command{
			{
				Name:  "list",
				Usage: "list the built-in scripts",
				Action: func(c *Context) error {
					if len(c.Args) > 0 {
						return Usagef("script list takes no arguments")
					}
					for _, b := range script.Builtins() {
						fmt.Fprintf(c.Stdout, "%-20s %s\n", b[0], b[1])
					}
					return nil
				},
			},
			{
				Name:      "show",
				Usage:     "print the source of a built-in script",
				ArgsUsage: "NAME",
				Action: func(c *Context) error {
					if len(c.Args) != 1 {
						return Usagef("script show takes one NAME")
					}
					src, ok := script.BuiltinSource(c.Args[0])
					if !ok {
						return Usagef("no built-in script %q (see 'ipfs-cluster script list')", c.Args[0])
					}
					_, err := c.Stdout.Write(src)
					return err
				},
			},
		},
		Action: runScriptCommand,
	}
}

func runScriptCommand(c *Context) error {
	if len(c.Args) == 0 {
		var names []string
		for _, b := range script.Builtins() {
			names = append(names, b[0])
		}
		return Usagef("script needs a FILE, or the name of a built-in script (%s)", strings.Join(names, ", "))
	}
	if c.Int("heap-limit") <= 0 {
		return Usagef("invalid --heap-limit %d: give the MiB the script may use", c.Int("heap-limit"))
	}
	path, src, err := script.Resolve(c.Args[0])
	if err != nil {
		return Exit(1, err)
	}
	ctx, stop, cl, err := ctlConnect(c)
	defer stop()
	if err != nil {
		return err
	}
	mode := script.ProgressAuto
	if c.Bool("no-progress") {
		mode = script.ProgressOff
	}
	err = script.Run(ctx, path, script.Options{
		Client: cl, Args: c.Args[1:], Source: src,
		Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr, Progress: mode,
		HeapLimit: int64(c.Int("heap-limit")) << 20,
	})
	var exit *script.ExitError
	var se *policy.ScriptError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit):
		return Exit(exit.Code, errors.New(""))
	case errors.Is(err, context.Canceled) && errors.As(err, &se):
		return Exit(scriptExitInterrupted, err)
	}
	return Exit(1, err)
}
