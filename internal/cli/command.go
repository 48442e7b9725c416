// Package cli is the command tree of the ipfs-cluster binary: the service
// commands (init, daemon, state), the API client (ctl) and the tools around
// them. It has its own small flag parser because the reference's tools
// accept flags before and after arguments, long and short aliases, and
// repeatable flags, which the standard flag package does not.
package cli

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FlagKind is the type of value a flag takes.
type FlagKind int

// Flag kinds.
const (
	BoolFlag FlagKind = iota
	StringFlag
	IntFlag
	DurationFlag
	StringSliceFlag // repeatable; every occurrence appends
)

// Flag describes one option of a command.
type Flag struct {
	Name    string   // long name, used with --
	Aliases []string // other names: single letters are used with -, longer ones with -- (both work)
	Kind    FlagKind
	Default string // as it would be written on the command line
	Usage   string
	EnvVar  string // read when the flag is not given
	Hidden  bool
}

// Command is a node of the command tree. A command with an Action runs it;
// one with only Subcommands dispatches to them.
type Command struct {
	Name        string
	Aliases     []string
	Usage       string // one line
	ArgsUsage   string
	Description string
	Flags       []Flag
	Subcommands []*Command
	// Named, when set, makes the first argument name a subcommand built
	// at run time ("ipfs-cluster-follow <clusterName> run"); without
	// arguments the Action runs.
	Named  func(name string) *Command
	Hidden bool
	Action func(*Context) error
}

// ExitError carries the process exit code of a failed command.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Exit wraps err with an exit code.
func Exit(code int, err error) error { return &ExitError{Code: code, Err: err} }

// UsageError is returned for bad flags or arguments; it exits with code 1
// (3 for an unknown command) and prints the usage hint of the command that
// failed.
type UsageError struct {
	msg  string
	path string // of the command that failed, set on the way up
	code int    // the exit code; 0 means 1
}

func (e *UsageError) Error() string { return e.msg }

// Usagef builds a UsageError.
func Usagef(format string, args ...any) error { return &UsageError{msg: fmt.Sprintf(format, args...)} }

// unknownCommand is the UsageError of a command name that does not exist.
// It exits with code 3, as the reference's tools (urfave/cli) do.
func unknownCommand(name string) error {
	return &UsageError{msg: fmt.Sprintf("unknown command %q", name), code: 3}
}

// Context is what an Action receives: parsed flags (its own and its
// ancestors'), positional arguments and the process streams.
type Context struct {
	Command *Command
	Parent  *Context
	Args    []string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Getenv  func(string) string

	values map[string]*flagValue
}

type flagValue struct {
	flag  *Flag
	set   bool
	str   string
	slice []string
}

func (c *Context) lookup(name string) *flagValue {
	for ctx := c; ctx != nil; ctx = ctx.Parent {
		if v, ok := ctx.values[name]; ok {
			return v
		}
	}
	panic(fmt.Sprintf("cli: flag %q is not declared on command %q or its parents", name, c.Command.Name))
}

// IsSet reports whether the flag was given on the command line or by its
// environment variable.
func (c *Context) IsSet(name string) bool { return c.lookup(name).set }

// String returns a string flag's value.
func (c *Context) String(name string) string { return c.lookup(name).str }

// Bool returns a bool flag's value.
func (c *Context) Bool(name string) bool {
	b, _ := strconv.ParseBool(c.lookup(name).str)
	return b
}

// Int returns an int flag's value (validated at parse time).
func (c *Context) Int(name string) int {
	n, _ := strconv.Atoi(c.lookup(name).str)
	return n
}

// Duration returns a duration flag's value (validated at parse time).
func (c *Context) Duration(name string) time.Duration {
	d, _ := time.ParseDuration(c.lookup(name).str)
	return d
}

// StringSlice returns every value given to a repeatable flag.
func (c *Context) StringSlice(name string) []string { return c.lookup(name).slice }

// Run parses args (without the program name) against root and runs the
// selected command. It returns the process exit code.
func Run(root *Command, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	ctx := &Context{Command: root, Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv}
	err := ctx.run(args)
	if err == nil {
		return 0
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "Error: %s\n", ue.msg)
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", ue.path)
		return cmp.Or(ue.code, 1)
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil && ee.Err.Error() != "" {
			fmt.Fprintf(stderr, "Error: %s\n", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintf(stderr, "Error: %s\n", err)
	return 1
}

// path is the command path used in messages ("ipfs-cluster ctl pin add").
func (c *Context) path() string {
	var names []string
	for ctx := c; ctx != nil; ctx = ctx.Parent {
		names = append([]string{ctx.Command.Name}, names...)
	}
	return strings.Join(names, " ")
}

func (c *Context) run(args []string) error {
	err := c.dispatch(args)
	var ue *UsageError
	if errors.As(err, &ue) && ue.path == "" {
		ue.path = c.path()
	}
	return err
}

func (c *Context) dispatch(args []string) error {
	rest, err := c.parse(args)
	if err != nil {
		return err
	}
	if c.Bool("help") {
		c.printHelp(c.Stdout)
		return nil
	}
	if c.Command.Named != nil && len(rest) > 0 {
		child := &Context{Command: c.Command.Named(rest[0]), Parent: c, Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr, Getenv: c.Getenv}
		return child.run(rest[1:])
	}
	if len(c.Command.Subcommands) > 0 && len(rest) > 0 {
		if sub := c.Command.find(rest[0]); sub != nil {
			child := &Context{Command: sub, Parent: c, Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr, Getenv: c.Getenv}
			return child.run(rest[1:])
		}
		if c.Command.Action == nil {
			return unknownCommand(rest[0])
		}
	}
	if c.Command.Action == nil {
		// A group of commands given none shows its help, as the
		// reference's do ("ipfs-cluster-ctl pin"); the program given
		// none fails.
		if c.Parent != nil {
			c.printHelp(c.Stdout)
			return nil
		}
		c.printHelp(c.Stderr)
		return Exit(1, errors.New(""))
	}
	c.Args = rest
	return c.Command.Action(c)
}

func (cmd *Command) find(name string) *Command {
	for _, s := range cmd.Subcommands {
		if s.Name == name {
			return s
		}
		for _, a := range s.Aliases {
			if a == name {
				return s
			}
		}
	}
	return nil
}

var helpFlag = Flag{Name: "help", Aliases: []string{"h"}, Kind: BoolFlag, Usage: "show help"}

// parse consumes this command's flags anywhere before the subcommand name
// (or anywhere at all for a leaf command) and returns the other words.
// Flags of ancestors are accepted too, so "ctl pin add --enc json" works.
func (c *Context) parse(args []string) ([]string, error) {
	c.values = make(map[string]*flagValue)
	byName := make(map[string]*flagValue)
	for i := range c.Command.Flags {
		f := &c.Command.Flags[i]
		v := &flagValue{flag: f, str: f.Default}
		c.values[f.Name] = v
		byName[f.Name] = v
		for _, a := range f.Aliases {
			byName[a] = v
		}
	}
	hv := &flagValue{flag: &helpFlag, str: "false"}
	c.values["help"] = hv
	byName["help"], byName["h"] = hv, hv

	leaf := len(c.Command.Subcommands) == 0 && c.Command.Named == nil
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' || isNumber(a) {
			rest = append(rest, a)
			if !leaf {
				// Everything after the subcommand name belongs to it.
				rest = append(rest, args[i+1:]...)
				break
			}
			continue
		}
		name := strings.TrimLeft(a, "-")
		value, hasValue := "", false
		if eq := strings.IndexByte(name, '='); eq >= 0 {
			name, value, hasValue = name[:eq], name[eq+1:], true
		}
		v := byName[name]
		if v == nil {
			v = c.ancestorFlag(name)
		}
		if v == nil {
			return nil, Usagef("flag provided but not defined: -%s", name)
		}
		if v.flag.Kind == BoolFlag {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 >= len(args) {
				return nil, Usagef("flag needs an argument: -%s", name)
			}
			i++
			value = args[i]
		}
		if err := v.setValue(name, value); err != nil {
			return nil, err
		}
	}
	for _, v := range c.values {
		if !v.set && v.flag.EnvVar != "" && c.Getenv != nil {
			if env := c.Getenv(v.flag.EnvVar); env != "" {
				if err := v.setValue(v.flag.EnvVar, env); err != nil {
					return nil, err
				}
			}
		}
	}
	return rest, nil
}

func (c *Context) ancestorFlag(name string) *flagValue {
	for ctx := c.Parent; ctx != nil; ctx = ctx.Parent {
		for _, v := range ctx.values {
			if v.flag.Name == name {
				return v
			}
			for _, a := range v.flag.Aliases {
				if a == name {
					return v
				}
			}
		}
	}
	return nil
}

func (v *flagValue) setValue(name, value string) error {
	switch v.flag.Kind {
	case BoolFlag:
		if _, err := strconv.ParseBool(value); err != nil {
			return Usagef("invalid boolean value %q for flag -%s", value, name)
		}
	case IntFlag:
		if _, err := strconv.Atoi(value); err != nil {
			return Usagef("invalid value %q for flag -%s: not an integer", value, name)
		}
	case DurationFlag:
		if d, err := time.ParseDuration(value); err != nil {
			return Usagef("invalid value %q for flag -%s: not a duration (examples: 30s, 5m, 1h)", value, name)
		} else if d < 0 {
			return Usagef("invalid value %q for flag -%s: a duration cannot be negative", value, name)
		}
	case StringSliceFlag:
		v.slice = append(v.slice, value)
	}
	v.str = value
	v.set = true
	return nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func (c *Context) printHelp(w io.Writer) {
	cmd := c.Command
	fmt.Fprintf(w, "NAME:\n   %s", c.path())
	if cmd.Usage != "" {
		fmt.Fprintf(w, " - %s", cmd.Usage)
	}
	fmt.Fprintf(w, "\n\nUSAGE:\n   %s", c.path())
	if len(cmd.Flags) > 0 {
		fmt.Fprint(w, " [options]")
	}
	if len(cmd.Subcommands) > 0 {
		fmt.Fprint(w, " command [arguments...]")
	} else if cmd.ArgsUsage != "" {
		fmt.Fprintf(w, " %s", cmd.ArgsUsage)
	}
	fmt.Fprintln(w)
	if cmd.Description != "" {
		fmt.Fprintf(w, "\nDESCRIPTION:\n%s\n", indent(strings.TrimSpace(cmd.Description), "   "))
	}
	if len(cmd.Subcommands) > 0 {
		fmt.Fprintln(w, "\nCOMMANDS:")
		for _, s := range cmd.Subcommands {
			if s.Hidden {
				continue
			}
			name := strings.Join(append([]string{s.Name}, s.Aliases...), ", ")
			fmt.Fprintf(w, "   %-22s %s\n", name, s.Usage)
		}
	}
	if len(cmd.Flags) > 0 {
		fmt.Fprintln(w, "\nOPTIONS:")
		for _, f := range cmd.Flags {
			if f.Hidden {
				continue
			}
			fmt.Fprintf(w, "   %-34s %s\n", flagSynopsis(f), flagUsage(f))
		}
	}
}

func flagSynopsis(f Flag) string {
	names := append([]string{f.Name}, f.Aliases...)
	sort.SliceStable(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	parts := make([]string, len(names))
	for i, n := range names {
		if len(n) == 1 {
			parts[i] = "-" + n
		} else {
			parts[i] = "--" + n
		}
	}
	s := strings.Join(parts, ", ")
	switch f.Kind {
	case StringFlag, StringSliceFlag:
		s += " value"
	case IntFlag:
		s += " n"
	case DurationFlag:
		s += " duration"
	}
	return s
}

func flagUsage(f Flag) string {
	u := f.Usage
	if f.Default != "" && f.Kind != BoolFlag {
		u += fmt.Sprintf(" (default: %s)", f.Default)
	}
	if f.EnvVar != "" {
		u += fmt.Sprintf(" [$%s]", f.EnvVar)
	}
	return u
}

func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n")
}

// Main runs root with the process's arguments and streams and exits.
func Main(root *Command, args []string) {
	os.Exit(Run(root, args, os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// hasFlag reports whether cmd itself defines the flag name.
func (cmd *Command) hasFlag(name string) bool {
	for _, f := range cmd.Flags {
		if f.Name == name {
			return true
		}
	}
	return false
}
