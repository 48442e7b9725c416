package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/files"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/script"
)

// addFlags are the flags of add (the reference's, section 2.3).
func addFlags() []Flag {
	pinFlags := slices.DeleteFunc(pinOptionFlags(), func(f Flag) bool { return f.Name == "replication" })
	return slices.Concat([]Flag{
		{Name: "recursive", Aliases: []string{"r"}, Kind: BoolFlag, Usage: "Add directory paths recursively"},
		{Name: "quiet", Aliases: []string{"q"}, Kind: BoolFlag, Usage: "Write only hashes to output (one per line)"},
		{Name: "quieter", Aliases: []string{"Q"}, Kind: BoolFlag, Usage: "Write only final hash to output"},
		{Name: "no-stream", Kind: BoolFlag, Usage: "Buffer output locally. Produces a valid JSON array with --enc=json."},
		{Name: "local", Kind: BoolFlag, Usage: "Add to local peer but pin normally"},
		{Name: "no-pin", Kind: BoolFlag, Usage: "Do not pin after adding"},
		{Name: "wait", Kind: BoolFlag, Usage: "Wait for all nodes to report a status of pinned before returning"},
		{Name: "wait-timeout", Aliases: []string{"wt"}, Kind: DurationFlag, Usage: "How long to --wait (in seconds), default is indefinitely"},
		{Name: "wrap-with-directory", Aliases: []string{"w"}, Kind: BoolFlag, Usage: "Wrap a with a directory object"},
		{Name: "format", Kind: StringFlag, Default: "unixfs", Usage: "'unixfs' (add files) or 'car' (import CAR file)"},
		{Name: "layout", Kind: StringFlag, Usage: "Dag layout to use for dag generation: balanced or trickle"},
		{Name: "hidden", Aliases: []string{"H"}, Kind: BoolFlag, Usage: "Include files that are hidden. Only takes effect on recursive add"},
		{Name: "chunker", Aliases: []string{"s"}, Kind: StringFlag, Default: adder.DefaultChunker, Usage: "'size-<size>' or 'rabin-<min>-<avg>-<max>'"},
		{Name: "raw-leaves", Kind: BoolFlag, Usage: "Use raw blocks for leaves (experimental)"},
		{Name: "cid-version", Kind: IntFlag, Default: "0", Usage: "CID version. Non default implies raw-leaves"},
		{Name: "hash", Kind: StringFlag, Default: adder.DefaultHashFunction, Usage: "Hash function to use. Implies cid-version=1 if non default"},
		{Name: "nocopy", Kind: BoolFlag, Usage: "Add the URL using filestore. Implies raw-leaves. (experimental)"},
	}, pinFlags)
}

// addCommand is ctl's add, and with bar set the top-level add, which
// also draws a progress bar on a terminal.
func addCommand(bar bool) *Command {
	flags := addFlags()
	if bar {
		flags = withGlobalFlags(flags)
	}
	return &Command{
		Name:  "add",
		Usage: "Add a file or directory to ipfs and pin it in the cluster",
		Description: `
Add one or more files or directories to the cluster: the DAG is built on the
contacted peer, exactly as 'ipfs add' builds it with the same options, and
its blocks stream at once to the IPFS daemons of the peers allocated to hold
it. The root is then pinned with those allocations. More than one path
implies --wrap-with-directory. A single - reads the content from stdin,
and an http:// or https:// URL is fetched and added as a file. With
--format car the file is a CAR archive with one root, imported and pinned
as is.`,
		ArgsUsage: "<path|url>... | -",
		Flags:     flags,
		Action: ctlAction(func(s *ctlSession) error {
			if len(s.cmd.Args) == 0 {
				return Usagef("add needs at least one path, or - to read stdin")
			}
			stdin := slices.Contains(s.cmd.Args, "-")
			if stdin && len(s.cmd.Args) > 1 {
				return Usagef("add reads stdin (-) alone, not with other paths")
			}
			query, err := dagQuery(s.cmd, len(s.cmd.Args) > 1)
			if err != nil {
				return err
			}
			if query, err = addQuery(s.cmd, query); err != nil {
				return err
			}
			if query.Get("format") == "car" {
				if err := carFiles("add", s.cmd.Args); err != nil {
					return err
				}
			}
			if stdin {
				// Unnamed, as kubo sends stdin: the output names it by its CID.
				return s.add(query, nil, func(fn func(api.AddedOutput) error) error {
					return s.client.AddFiles(s.ctx, client.ReaderDirectory("", s.cmd.Stdin), query, fn)
				})
			}
			var progress *uploadProgress
			if bar && !s.cmd.Bool("quiet") && !s.cmd.Bool("quieter") && script.IsTerminal(s.cmd.Stderr) {
				progress = startProgress(s.cmd.Stderr, client.UploadSize(s.cmd.Args, s.cmd.Bool("hidden")))
				defer progress.stop()
			}
			return s.add(query, progress, func(fn func(api.AddedOutput) error) error {
				ctx := s.ctx
				if progress != nil {
					ctx = client.WithUploadCounter(ctx, &progress.sent)
				}
				return s.client.Add(ctx, s.cmd.Args, query, fn)
			})
		}),
	}
}

// importCommand imports CAR files: add --format car, one file at a time.
func importCommand() *Command {
	flags := slices.DeleteFunc(addFlags(), func(f Flag) bool {
		switch f.Name {
		case "recursive", "wrap-with-directory", "format", "layout", "hidden", "chunker", "raw-leaves", "cid-version", "hash", "nocopy":
			return true
		}
		return false
	})
	return &Command{
		Name:  "import",
		Usage: "Import CAR files into the cluster and pin their root",
		Description: `
Import CAR archives (version 1 or 2) with exactly one root each. Every block
is checked against its CID while it streams to the IPFS daemons of the
allocated peers; a corrupt or truncated file fails with the offset or block
at fault and nothing is pinned.`,
		ArgsUsage: "<file.car|url>... | -",
		Flags:     withGlobalFlags(flags),
		Action: ctlAction(func(s *ctlSession) error {
			if len(s.cmd.Args) == 0 {
				return Usagef("import needs at least one CAR file")
			}
			query, err := addQuery(s.cmd, url.Values{"format": {"car"}})
			if err != nil {
				return err
			}
			if slices.Contains(s.cmd.Args, "-") && len(s.cmd.Args) > 1 {
				return Usagef("import reads stdin (-) alone, not with other files")
			}
			if err := carFiles("import", s.cmd.Args); err != nil {
				return err
			}
			for i, path := range s.cmd.Args {
				err := s.importOne(query, path)
				if err == nil {
					continue
				}
				// Which file failed matters once some were imported,
				// and so do the ones not tried: the API's errors get
				// their names too.
				prefix, suffix := "import "+path+": ", ""
				if rest := s.cmd.Args[i+1:]; len(rest) > 0 {
					suffix = fmt.Sprintf(" (not imported: %s)", strings.Join(rest, ", "))
				}
				var apiErr api.Error
				if errors.As(err, &apiErr) {
					apiErr.Message = prefix + apiErr.Message + suffix
					return apiErr
				}
				return fmt.Errorf("%s%w%s", prefix, err, suffix)
			}
			return nil
		}),
	}
}

// carFiles checks that every path is a CAR file that exists (or stdin,
// or a URL) before the first is sent, as add checks its paths: a typo in
// the last name must not leave the others half imported, and a folder
// must not be sent as a CAR.
func carFiles(command string, paths []string) error {
	for _, path := range paths {
		if path == "-" || client.IsURL(path) {
			continue
		}
		st, err := os.Stat(path)
		if err != nil {
			return &client.InputError{Err: fmt.Errorf("%s: %w", command, err)}
		}
		if st.IsDir() {
			return &client.InputError{Err: fmt.Errorf("%s %s: a directory, not a CAR file", command, path)}
		}
	}
	return nil
}

// importOne imports one CAR: a file, stdin (-) or an http(s) URL, as add
// --format car takes them.
func (s *ctlSession) importOne(query url.Values, path string) error {
	var dir files.Directory
	switch {
	case path == "-":
		dir = client.ReaderDirectory("", s.cmd.Stdin)
	case client.IsURL(path):
		return s.add(query, nil, func(fn func(api.AddedOutput) error) error {
			return s.client.Add(s.ctx, []string{path}, query, fn)
		})
	default:
		f, err := os.Open(path)
		if err != nil {
			return &client.InputError{Err: err}
		}
		defer f.Close()
		dir = client.ReaderDirectory(filepath.Base(path), f)
	}
	return s.add(query, nil, func(fn func(api.AddedOutput) error) error {
		return s.client.AddFiles(s.ctx, dir, query, fn)
	})
}

// withGlobalFlags adds ctl's global flags to a top-level command's own;
// a short alias both define stays the command's (add's -s is --chunker,
// as in ctl add, not --https).
func withGlobalFlags(own []Flag) []Flag {
	taken := map[string]bool{}
	for _, f := range own {
		taken[f.Name] = true
		for _, a := range f.Aliases {
			taken[a] = true
		}
	}
	global := ctlGlobalFlags()
	for i := range global {
		global[i].Aliases = slices.DeleteFunc(global[i].Aliases, func(a string) bool { return taken[a] })
	}
	return slices.Concat(global, own)
}

// dagQuery reads add's DAG flags (and --format) into /add query
// parameters; wrap forces wrap-with-directory. Unsupported or invalid
// options fail here, before anything is read.
func dagQuery(c *Context, wrap bool) (url.Values, error) {
	if c.Bool("nocopy") {
		return nil, Usagef("--nocopy is not supported: the cluster adds blocks to every allocated peer's repository")
	}
	opts := adder.Options{
		Recursive:     c.Bool("recursive"),
		Hidden:        c.Bool("hidden"),
		Wrap:          c.Bool("wrap-with-directory") || wrap,
		Layout:        c.String("layout"),
		Chunker:       c.String("chunker"),
		RawLeaves:     c.Bool("raw-leaves"),
		RawLeavesSet:  c.IsSet("raw-leaves"),
		CidVersion:    c.Int("cid-version"),
		CidVersionSet: c.IsSet("cid-version"),
		HashFunction:  c.String("hash"),
	}
	q := opts.Query()
	if _, err := adder.ParseQuery(q); err != nil {
		return nil, Usagef("%v", err)
	}
	switch f := c.String("format"); f {
	case "unixfs":
	case "car":
		if opts.Wrap {
			return nil, Usagef("--format car cannot be combined with wrapping (-w, or more than one path)")
		}
		q.Set("format", f)
	default:
		return nil, Usagef("invalid --format %q: want unixfs or car", f)
	}
	return q, nil
}

// addQuery adds the pin options and the flags add and import share to q.
func addQuery(c *Context, q url.Values) (url.Values, error) {
	pinOpts, err := pinAddOptions(c)
	if err != nil {
		return nil, err
	}
	for k, v := range api.PinOptionsToQuery(pinOpts) {
		q[k] = v
	}
	for _, name := range []string{"local", "no-pin"} {
		if c.Bool(name) {
			q.Set(name, "true")
		}
	}
	if c.Bool("no-stream") {
		q.Set("stream-channels", "false")
	}
	return q, nil
}

// add runs one add call and prints its output as the reference does:
// "added <cid> <name>" lines, only CIDs with -q, only the last with -Q
// (in a one-item array with --no-stream in JSON); then, with --wait, it
// returns once the root is pinned, printing nothing more. A progress bar,
// when given, is cleared for each line and drawn again below it.
func (s *ctlSession) add(query url.Values, progress *uploadProgress, call func(fn func(api.AddedOutput) error) error) error {
	var last api.AddedOutput
	var buffered []api.AddedOutput
	err := call(func(o api.AddedOutput) error {
		if !o.Cid.Defined() { // progress
			return nil
		}
		return progress.interrupt(func() error {
			var err error
			last, buffered, err = s.addOutput(o, buffered)
			return err
		})
	})
	if err != nil {
		return err
	}
	quieter := s.cmd.Bool("quieter")
	switch {
	case buffered != nil:
		if err := s.out.print(buffered); err != nil {
			return err
		}
	case quieter && last.Cid.Defined():
		if s.out.json && s.cmd.Bool("no-stream") {
			if err := s.out.print([]api.AddedOutput{last}); err != nil {
				return err
			}
		} else if s.out.json {
			if err := s.out.print(last); err != nil {
				return err
			}
		} else if _, err := fmt.Fprintln(s.out.stdout, last.Cid); err != nil {
			return err
		}
	}
	if !s.cmd.Bool("wait") || query.Get("no-pin") == "true" || !last.Cid.Defined() {
		return nil
	}
	ctx := s.ctx
	if timeout := s.cmd.Duration("wait-timeout"); timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	pin, err := s.client.Allocation(ctx, last.Cid)
	if err != nil {
		return err
	}
	if _, err := s.client.WaitFor(ctx, client.WaitParams{Cid: last.Cid, Target: api.TrackerStatusPinned,
		Limit: pin.ReplicationFactorMin, CheckFreq: ctlWaitCheckFreq}); err != nil {
		return &waitError{err}
	}
	return nil
}

// addOutput prints one output line of an add as the flags ask, or adds it
// to buffered for --no-stream in JSON; it returns the line as the last one
// and the buffer.
func (s *ctlSession) addOutput(o api.AddedOutput, buffered []api.AddedOutput) (api.AddedOutput, []api.AddedOutput, error) {
	// Told even with -Q or JSON output: the add went on without these
	// destinations, and status will show them until repaired.
	for _, f := range o.FailedDestinations {
		fmt.Fprintf(s.cmd.Stderr, "warning: peer %s did not get the blocks of %s (%s); it will fetch them when it pins\n", f.Peer, o.Cid, f.Error)
	}
	var err error
	switch {
	case s.cmd.Bool("quieter"):
	case s.out.json && s.cmd.Bool("no-stream"):
		buffered = append(buffered, o)
	case s.out.json:
		err = s.out.print(o)
	case s.cmd.Bool("quiet"):
		_, err = fmt.Fprintln(s.out.stdout, o.Cid)
	default:
		_, err = fmt.Fprintf(s.out.stdout, "added %s %s\n", o.Cid, o.Name)
	}
	return o, buffered, err
}

// uploadProgress redraws one line on a terminal with the file bytes sent,
// the rate and the time left, four times a second. Lines printed meanwhile
// go through interrupt, which clears the bar first and draws it again
// below them. A nil *uploadProgress draws nothing.
type uploadProgress struct {
	sent  atomic.Int64
	total int64
	w     io.Writer
	start time.Time
	done  chan struct{}
	ended chan struct{}

	mu sync.Mutex // serialises the writes to the terminal
}

func startProgress(w io.Writer, total int64) *uploadProgress {
	p := &uploadProgress{total: total, w: w, start: time.Now(), done: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(p.ended)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.done:
				p.mu.Lock()
				p.draw()
				fmt.Fprintln(p.w)
				p.mu.Unlock()
				return
			case <-tick.C:
				p.mu.Lock()
				p.draw()
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// draw writes the bar over the current line; p.mu must be held.
func (p *uploadProgress) draw() {
	sent := p.sent.Load()
	rate := float64(sent) / max(time.Since(p.start).Seconds(), 0.001)
	eta := "-"
	if rate > 0 && p.total > sent {
		eta = time.Duration(float64(p.total-sent) / rate * float64(time.Second)).Round(time.Second).String()
	}
	pct := 100.0
	if p.total > 0 {
		pct = min(100, 100*float64(sent)/float64(p.total))
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s / %s  %5.1f%%  %s/s  ETA %s", humanBytes(uint64(sent)), humanBytes(uint64(p.total)), pct, humanBytes(uint64(rate)), eta)
}

// interrupt clears the bar, runs print, and draws the bar again.
func (p *uploadProgress) interrupt(print func() error) error {
	if p == nil {
		return print()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, "\r\x1b[K")
	err := print()
	p.draw()
	return err
}

// stop draws the bar a last time and ends its line.
func (p *uploadProgress) stop() {
	close(p.done)
	<-p.ended
}
