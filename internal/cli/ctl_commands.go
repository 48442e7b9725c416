package cli

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/client"
)

// The pause before the status that follows pin add/rm/update, and the
// polling interval of --wait. Variables so that tests need not sleep.
var (
	ctlStatusDelay   = time.Second
	ctlWaitCheckFreq = time.Second
)

const (
	waitFlagDesc        = "Wait for the pin to reach the minimum replication factor before returning"
	waitLimitFlagDesc   = "How many peers should reach the desired status to finish waiting"
	waitTimeoutFlagDesc = "How long to --wait, as a duration such as 30s. Default: forever"
)

func localFlag() Flag {
	return Flag{Name: "local", Kind: BoolFlag, Usage: "run operation only on the contacted peer"}
}

// pinStatusFlags are the flags of the commands that change a pin and then
// report its status.
// pinOptionFlags are the pin options pin add and add share.
func pinOptionFlags() []Flag {
	return []Flag{
		{Name: "replication", Aliases: []string{"r"}, Kind: IntFlag, Default: "0",
			Usage: "Sets a custom replication factor (overrides -rmax and -rmin)"},
		{Name: "replication-min", Aliases: []string{"rmin"}, Kind: IntFlag, Default: "0",
			Usage: "Sets the minimum replication factor for this pin"},
		{Name: "replication-max", Aliases: []string{"rmax"}, Kind: IntFlag, Default: "0",
			Usage: "Sets the maximum replication factor for this pin"},
		{Name: "allocations", Aliases: []string{"allocs"}, Kind: StringFlag,
			Usage: "Optional comma-separated list of peer IDs"},
		{Name: "name", Aliases: []string{"n"}, Kind: StringFlag, Usage: "Sets a name for this pin"},
		{Name: "expire-in", Kind: DurationFlag,
			Usage: "Duration after which pin should be unpinned automatically"},
		{Name: "metadata", Kind: StringSliceFlag, Usage: "Pin metadata: key=value. Can be added multiple times"},
	}
}

func pinStatusFlags(doing string) []Flag {
	return []Flag{
		{Name: "no-status", Aliases: []string{"ns"}, Kind: BoolFlag,
			Usage: "Prevents fetching pin status after " + doing + " (faster, quieter)"},
		{Name: "wait", Aliases: []string{"w"}, Kind: BoolFlag, Usage: waitFlagDesc},
		{Name: "wait-limit", Aliases: []string{"wl"}, Kind: IntFlag, Usage: waitLimitFlagDesc},
		{Name: "wait-timeout", Aliases: []string{"wt"}, Kind: DurationFlag, Usage: waitTimeoutFlagDesc},
	}
}

func ctlCommands() []*Command {
	return []*Command{
		{
			Name:  "id",
			Usage: "Retrieve peer information",
			Description: `
This command displays information about the peer that the tool is contacting
(usually running in localhost).`,
			Action: printOne(func(s *ctlSession) (any, error) { return s.client.ID(s.ctx) }),
		},
		{
			Name:        "peers",
			Usage:       "List and manage IPFS Cluster peers",
			Description: "List and manage IPFS Cluster peers",
			Subcommands: []*Command{
				{
					Name:  "ls",
					Usage: "list the nodes participating in the IPFS Cluster",
					Description: `
This command provides a list of the ID information of all the peers in the Cluster.`,
					Action: ctlAction(func(s *ctlSession) error {
						if err := s.args(0, 0); err != nil {
							return err
						}
						return s.client.Peers(s.ctx, printEach[api.ID](s.out))
					}),
				},
				{
					Name:  "rm",
					Usage: "remove a peer from the Cluster",
					Description: `
This command removes a peer from the cluster. If the peer is online, it will
automatically shut down. All other cluster peers should be online for the
operation to succeed, otherwise some nodes may be left with an outdated list of
cluster peers.`,
					ArgsUsage: "<peer ID>",
					Action: ctlAction(func(s *ctlSession) error {
						if err := s.args(1, 1); err != nil {
							return err
						}
						p, err := peer.Decode(s.cmd.Args[0])
						if err != nil {
							return Usagef("invalid peer ID %q: %v", s.cmd.Args[0], err)
						}
						return s.client.PeerRm(s.ctx, p)
					}),
				},
			},
		},
		addCommand(false),
		{
			Name:        "pin",
			Usage:       "Pin and unpin and list items in IPFS Cluster",
			Description: "Pin and unpin and list items in IPFS Cluster",
			Subcommands: []*Command{pinAddCommand(), pinRmCommand(), pinUpdateCommand(), pinLsCommand()},
		},
		statusCommand(),
		recoverCommand(),
		{
			Name:  "version",
			Usage: "Retrieve cluster version",
			Description: `
This command retrieves the IPFS Cluster version and can be used
to check that it matches the CLI version (shown by -v).`,
			Action: printOne(func(s *ctlSession) (any, error) { return s.client.Version(s.ctx) }),
		},
		healthCommand(),
		ctlPolicyCommand(),
		{
			Name:        "ipfs",
			Usage:       "Manage IPFS daemon",
			Description: "Manage IPFS daemon",
			Subcommands: []*Command{{
				Name:  "gc",
				Usage: "run garbage collection on IPFS repos of cluster peers",
				Description: `
This command will instruct current Cluster peers to run "repo gc" on their
respective IPFS daemons.

When --local flag is passed, it will garbage collect only on the local IPFS
daemon, otherwise on all IPFS daemons.`,
				Flags:  []Flag{localFlag()},
				Action: printOne(func(s *ctlSession) (any, error) { return s.client.RepoGC(s.ctx, s.cmd.Bool("local")) }),
			}},
		},
		{
			Name:   "commands",
			Usage:  "List all commands",
			Hidden: true,
			Action: func(c *Context) error {
				walkCommands(c, c.Parent.path(), c.Parent.Command.Subcommands)
				return nil
			},
		},
		{
			Name:      "help",
			Aliases:   []string{"h"},
			Usage:     "Shows a list of commands or help for one command",
			ArgsUsage: "[command]",
			Action:    ctlHelp,
		},
	}
}

// walkCommands prints the full path of every command, hidden ones included.
func walkCommands(c *Context, parent string, cmds []*Command) {
	for _, cmd := range cmds {
		p := parent + " " + cmd.Name
		fmt.Fprintln(c.Stdout, p)
		walkCommands(c, p, cmd.Subcommands)
	}
}

// ctlHelp prints the help of the root or of the command path in the
// arguments ("help pin add").
func ctlHelp(c *Context) error {
	target := c.Parent
	for _, name := range c.Args {
		sub := target.Command.find(name)
		if sub == nil {
			//lint:ignore ST1005 ipfs-cluster-ctl prints this text; it stays word for word
			return Exit(3, fmt.Errorf("No help topic for '%s'", name))
		}
		target = &Context{Command: sub, Parent: target}
	}
	target.printHelp(c.Stdout)
	return nil
}

// args checks the number of positional arguments.
func (s *ctlSession) args(minArgs, maxArgs int) error {
	n := len(s.cmd.Args)
	switch {
	case n < minArgs && s.cmd.Command.ArgsUsage != "":
		return Usagef("missing argument: %s", s.cmd.Command.ArgsUsage)
	case n < minArgs:
		return Usagef("missing argument")
	case maxArgs >= 0 && n > maxArgs:
		return Usagef("unexpected argument %q", s.cmd.Args[maxArgs])
	}
	return nil
}

// cidArg parses a positional argument that must be a CID.
func cidArg(s string) (api.Cid, error) {
	c, err := api.DecodeCid(s)
	if err != nil {
		return api.CidUndef, Usagef("invalid CID %q: %v", s, err)
	}
	return c, nil
}

// pathArg checks a <CID|Path> argument before it is sent.
func pathArg(s string) (string, error) {
	p, err := client.IPFSPath(s)
	if err != nil {
		return "", Usagef("%v", err)
	}
	return p, nil
}

// expireAt turns --expire-in into an absolute time: zero, no expiry, when
// not given or 0 (a script passing --expire-in 0 means no expiry, not a
// pin already expired).
func expireAt(c *Context) time.Time {
	if !c.IsSet("expire-in") || c.Duration("expire-in") == 0 {
		return time.Time{}
	}
	return time.Now().Add(c.Duration("expire-in"))
}

func pinAddCommand() *Command {
	return &Command{
		Name:  "add",
		Usage: "Pin an item in the cluster",
		Description: `
This command tells IPFS Cluster to start managing a CID. Depending on
the pinning strategy, this will trigger IPFS pin requests. The CID will
become part of the Cluster's state and will tracked from this point.

When the request has succeeded, the command returns the status of the CID
in the cluster and should be part of the list offered by "pin ls".

An optional replication factor can be provided: -1 means "pin everywhere"
and 0 means use cluster's default setting (i.e., replication factor set in
config). Positive values indicate how many peers should pin this content.

An optional allocations argument can be provided, allocations should be a
comma-separated list of peer IDs on which we want to pin. Peers in allocations
are prioritized over automatically-determined ones, but replication factors
would still be respected.`,
		ArgsUsage: "<CID|Path>",
		Flags: slices.Concat(pinOptionFlags(),
			[]Flag{{Name: "mode", Kind: StringFlag, Default: "recursive", Usage: "Select a way to pin: recursive or direct"}},
			pinStatusFlags("pinning")),
		Action: ctlAction(func(s *ctlSession) error {
			if err := s.args(1, 1); err != nil {
				return err
			}
			p, err := pathArg(s.cmd.Args[0])
			if err != nil {
				return err
			}
			opts, err := pinAddOptions(s.cmd)
			if err != nil {
				return err
			}
			pin, err := s.client.PinPath(s.ctx, p, opts)
			if err != nil {
				return err
			}
			return s.reportPin(pin, api.TrackerStatusPinned)
		}),
	}
}

// pinAddOptions reads the pin options of pin add from its flags.
func pinAddOptions(c *Context) (api.PinOptions, error) {
	opts := api.PinOptions{
		ReplicationFactorMin: c.Int("replication-min"),
		ReplicationFactorMax: c.Int("replication-max"),
		Name:                 c.String("name"),
		ExpireAt:             expireAt(c),
		Metadata:             map[string]string{},
	}
	if c.Command.hasFlag("replication") {
		if r := c.Int("replication"); r != 0 {
			opts.ReplicationFactorMin, opts.ReplicationFactorMax = r, r
		}
	}
	if c.Command.hasFlag("mode") {
		mode, err := api.PinModeFromString(c.String("mode"))
		if err != nil {
			return opts, Usagef("invalid --mode: %v", err)
		}
		opts.Mode = mode
	}
	var err error
	if opts.UserAllocations, err = api.ParsePeerList(c.String("allocations")); err != nil {
		return opts, Usagef("invalid --allocations: %v", err)
	}
	for _, kv := range c.StringSlice("metadata") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return opts, Usagef("invalid --metadata %q: want key=value", kv)
		}
		opts.Metadata[k] = v
	}
	return opts, nil
}

func pinRmCommand() *Command {
	return &Command{
		Name:  "rm",
		Usage: "Unpin an item from the cluster",
		Description: `
This command tells IPFS Cluster to no longer manage a CID. This will
trigger unpinning operations in all the IPFS nodes holding the content.

When the request has succeeded, the command returns the status of the CID
in the cluster. The CID should disappear from the list offered by "pin ls",
although unpinning operations in the cluster may take longer or fail.`,
		ArgsUsage: "<CID|Path>",
		Flags:     pinStatusFlags("unpinning"),
		Action: ctlAction(func(s *ctlSession) error {
			if err := s.args(1, 1); err != nil {
				return err
			}
			p, err := pathArg(s.cmd.Args[0])
			if err != nil {
				return err
			}
			pin, err := s.client.UnpinPath(s.ctx, p)
			if err != nil {
				return err
			}
			return s.reportPin(pin, api.TrackerStatusUnpinned)
		}),
	}
}

func pinUpdateCommand() *Command {
	return &Command{
		Name:  "update",
		Usage: "Pin a new item based on an existing one",
		Description: `
This command will add a new pin to the cluster taking all the options from an
existing one, including name. This means that the new pin will bypass the
allocation process and will be allocated to the same peers as the existing
one.

The cluster peers will try to Pin the new item on IPFS using the "pin update"
command. This is especially efficient when the content of two pins (their DAGs)
are similar.

Unlike the "pin update" command in the ipfs daemon, this will not unpin the
existing item from the cluster. Please run "pin rm" for that.`,
		ArgsUsage: "<existing-CID> <new-CID|Path>",
		Flags: append([]Flag{
			{Name: "name", Aliases: []string{"n"}, Kind: StringFlag, Usage: "Sets a name for this updated pin"},
			{Name: "expire-in", Kind: DurationFlag,
				Usage: "Duration after which the pin should be unpinned automatically after updating"},
		}, pinStatusFlags("updating")...),
		Action: ctlAction(func(s *ctlSession) error {
			if err := s.args(2, 2); err != nil {
				return err
			}
			from, err := cidArg(s.cmd.Args[0])
			if err != nil {
				return err
			}
			to, err := pathArg(s.cmd.Args[1])
			if err != nil {
				return err
			}
			opts := api.PinOptions{PinUpdate: from, Name: s.cmd.String("name"), ExpireAt: expireAt(s.cmd)}
			pin, err := s.client.PinPath(s.ctx, to, opts)
			if err != nil {
				return err
			}
			return s.reportPin(pin, api.TrackerStatusPinned)
		}),
	}
}

// reportPin prints what pin add/rm/update print after the request: the pin
// itself with --no-status, otherwise its status, after --wait or after a
// pause that lets the peers start working on it.
func (s *ctlSession) reportPin(pin api.Pin, target api.TrackerStatus) error {
	var status api.GlobalPinInfo
	if s.cmd.Bool("wait") {
		limit := s.cmd.Int("wait-limit")
		if !s.cmd.IsSet("wait-limit") && target == api.TrackerStatusPinned {
			limit = pin.ReplicationFactorMin
		}
		ctx := s.ctx
		if timeout := s.cmd.Duration("wait-timeout"); timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		var err error
		status, err = s.client.WaitFor(ctx, client.WaitParams{
			Cid: pin.Cid, Target: target, Limit: limit, CheckFreq: ctlWaitCheckFreq,
		})
		if err != nil {
			return &waitError{err}
		}
	}
	if s.cmd.Bool("no-status") {
		return s.out.print(pin)
	}
	if !status.Cid.Defined() {
		select {
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-time.After(ctlStatusDelay):
		}
		var err error
		if status, err = s.client.Status(s.ctx, pin.Cid, false); err != nil {
			return err
		}
	}
	return s.out.print(status)
}

func pinLsCommand() *Command {
	return &Command{
		Name:  "ls",
		Usage: "List items in the cluster pinset",
		Description: `
This command will list the CIDs which are tracked by IPFS Cluster and to
which peers they are currently allocated. This list does not include
any monitoring information about the IPFS status of the CIDs, it
merely represents the list of pins which are part of the shared state of
the cluster. For IPFS-status information about the pins, use "status".

The filter only takes effect when listing all pins. The possible values are:
  - all (default)
  - pin (normal pins, recursive or direct)
  - meta-pin (sharded pins)
  - clusterdag-pin (sharding-dag root pins)
  - shard-pin (individual shard pins)`,
		ArgsUsage: "[CID]",
		Flags: []Flag{{Name: "filter", Kind: StringFlag, Default: "all",
			Usage: "Comma separated list of pin types. See help above."}},
		Action: ctlAction(func(s *ctlSession) error {
			if err := s.args(0, 1); err != nil {
				return err
			}
			if len(s.cmd.Args) == 1 {
				ci, err := cidArg(s.cmd.Args[0])
				if err != nil {
					return err
				}
				pin, err := s.client.Allocation(s.ctx, ci)
				if err != nil {
					return err
				}
				return s.out.print(pin)
			}
			filter, unknown, err := api.ParsePinTypeFilter(s.cmd.String("filter"))
			if err != nil {
				return Usagef("invalid --filter: %v", err)
			}
			s.warnIgnored("pin type", unknown)
			return s.client.Allocations(s.ctx, filter, printEach[api.Pin](s.out))
		}),
	}
}

func statusCommand() *Command {
	statuses := []string{"  - " + api.TrackerStatusError.String(), "  - " + api.TrackerStatusQueued.String()}
	for _, st := range api.TrackerStatusAll {
		statuses = append(statuses, "  - "+st.String())
	}
	slices.Sort(statuses)
	return &Command{
		Name:  "status",
		Usage: "Retrieve the status of tracked items",
		Description: `
This command retrieves the status of the CIDs tracked by IPFS
Cluster, including which member is pinning them and any errors.
If one of several CIDs are provided, the status will be only fetched
for a single item.  Metadata CIDs are included in the status response.

When the --local flag is passed, it will only fetch the status from the
contacted cluster peer. By default, status will be fetched from all peers.

When the --filter flag is passed, it will only fetch the peer information
where status of the pin matches at least one of the filter values (a comma
separated list). The following are valid status values:

` + strings.Join(statuses, "\n"),
		ArgsUsage: "[CID1] [CID2]...",
		Flags: []Flag{
			localFlag(),
			{Name: "filter", Kind: StringFlag, Usage: "comma-separated list of filters"},
		},
		Action: ctlAction(func(s *ctlSession) error {
			cids := make([]api.Cid, len(s.cmd.Args))
			for i, a := range s.cmd.Args {
				ci, err := cidArg(a)
				if err != nil {
					return err
				}
				cids[i] = ci
			}
			local := s.cmd.Bool("local")
			switch len(cids) {
			case 0:
				filter, unknown, err := api.ParseTrackerStatusFilter(s.cmd.String("filter"))
				if err != nil {
					return Usagef("invalid --filter: %v", err)
				}
				s.warnIgnored("status", unknown)
				return s.client.StatusAll(s.ctx, filter, local, printEach[api.GlobalPinInfo](s.out))
			case 1:
				gpi, err := s.client.Status(s.ctx, cids[0], local)
				if err != nil {
					return err
				}
				return s.out.print(gpi)
			default:
				return s.client.StatusCids(s.ctx, cids, local, printEach[api.GlobalPinInfo](s.out))
			}
		}),
	}
}

func recoverCommand() *Command {
	return &Command{
		Name:  "recover",
		Usage: "Recover tracked items in error state",
		Description: `
This command asks Cluster peers to re-track or re-forget CIDs in
error state, usually because the IPFS pin or unpin operation has failed.

The command will wait for any operations to succeed and will return the status
of the item upon completion. Note that, when running on the full sets of tracked
CIDs (without argument), it may take a considerably long time.

When the --local flag is passed, it will only trigger recover
operations on the contacted peer (as opposed to on every peer).`,
		ArgsUsage: "[CID]",
		Flags:     []Flag{localFlag()},
		Action: ctlAction(func(s *ctlSession) error {
			if err := s.args(0, 1); err != nil {
				return err
			}
			local := s.cmd.Bool("local")
			if len(s.cmd.Args) == 0 {
				return s.client.RecoverAll(s.ctx, local, printEach[api.GlobalPinInfo](s.out))
			}
			ci, err := cidArg(s.cmd.Args[0])
			if err != nil {
				return err
			}
			gpi, err := s.client.Recover(s.ctx, ci, local)
			if err != nil {
				return err
			}
			return s.out.print(gpi)
		}),
	}
}

func healthCommand() *Command {
	return &Command{
		Name:        "health",
		Usage:       "Cluster monitoring information",
		Description: "Cluster monitoring information",
		Subcommands: []*Command{
			{
				Name:  "graph",
				Usage: "create a graph displaying connectivity of cluster peers",
				Description: `
This command queries all connected cluster peers and their ipfs peers to generate a
graph of the connections.  Output is a dot file encoding the cluster's connection state.`,
				Flags: []Flag{
					{Name: "file", Aliases: []string{"f"}, Kind: StringFlag,
						Usage: "sets an output dot-file for the connectivity graph"},
					{Name: "all-ipfs-peers", Kind: BoolFlag,
						Usage: "causes the graph to mark nodes for ipfs peers not directly in the cluster"},
				},
				Action: ctlAction(func(s *ctlSession) error {
					if err := s.args(0, 0); err != nil {
						return err
					}
					g, err := s.client.HealthGraph(s.ctx)
					if err != nil {
						return err
					}
					dot := makeDot(g, s.cmd.Bool("all-ipfs-peers"))
					if file := s.cmd.String("file"); file != "" {
						if err := os.WriteFile(file, []byte(dot), 0o644); err != nil {
							return fmt.Errorf("writing the graph: %w", err)
						}
						return nil
					}
					_, err = fmt.Fprint(s.cmd.Stdout, dot)
					return err
				}),
			},
			{
				Name:  "metrics",
				Usage: "List latest metrics logged by this peer",
				Description: `
This commands displays the latest valid metrics of the given type logged
by this peer for all current cluster peers.

If no argument is provided, the command retrieves all currently existing metric types.

Currently supported metrics depend on the informer component used,
but usually are:

- freespace
- ping`,
				ArgsUsage: "<metric name>",
				Action: ctlAction(func(s *ctlSession) error {
					if err := s.args(0, 1); err != nil {
						return err
					}
					if len(s.cmd.Args) == 0 {
						names, err := s.client.MetricNames(s.ctx)
						if err != nil {
							return err
						}
						return s.out.print(names)
					}
					name := s.cmd.Args[0]
					metrics, err := s.client.Metrics(s.ctx, name)
					if err != nil {
						return err
					}
					if len(metrics) == 0 {
						// An empty answer reads as "no peer reports it";
						// a mistyped name (tags for tag:group) deserves
						// to be told apart, on stderr: the answer and
						// exit status stay the reference's for scripts.
						names, err := s.client.MetricNames(s.ctx)
						if err == nil && !slices.Contains(names, name) {
							fmt.Fprintf(s.cmd.Stderr, "no metric named %q: the peer knows %s\n", name, strings.Join(names, ", "))
						}
					}
					return s.out.print(metrics)
				}),
			},
			{
				Name:  "alerts",
				Usage: "List the latest expired metric alerts",
				Description: `
This command provides a list of "alerts" that the cluster has seen.

An alert is triggered when one of the metrics seen for a peer expires, and no
new metrics have been received.

Different alerts may be handled in different ways. i.e. ping alerts may
trigger automatic repinnings if configured.`,
				Action: printOne(func(s *ctlSession) (any, error) { return s.client.Alerts(s.ctx) }),
			},
			{
				Name:  "bandwidth",
				Usage: "Lists bandwidth stats for libp2p protocols",
				Description: `
This command lists information about bytes sent, received and current bandwidth
rates for each libp2p protocol that the peer uses.`,
				Action: printOne(func(s *ctlSession) (any, error) { return s.client.BandwidthByProtocol(s.ctx) }),
			},
		},
	}
}

// ctlPolicyCommand manages the peers' Lua policies through the API.
func ctlPolicyCommand() *Command {
	return &Command{
		Name:        "policy",
		Usage:       "Manage the peers' Lua policies",
		Description: "Manage the Lua policies the peers run (cluster.policy_file).",
		Subcommands: []*Command{{
			Name:  "reload",
			Usage: "make the peers read their policy files again",
			Description: `
This command makes every peer read its policy file again (only the peer
contacted with --local) and prints, for each one, the sha256 of the policy
it runs afterwards. A peer whose new policy does not load keeps the one it
had and reports the error; the command then exits with an error.`,
			Flags: []Flag{localFlag()},
			Action: ctlAction(func(s *ctlSession) error {
				if err := s.args(0, 0); err != nil {
					return err
				}
				out, err := s.client.PolicyReload(s.ctx, s.cmd.Bool("local"))
				if err != nil {
					return err
				}
				if err := s.out.print(out); err != nil {
					return err
				}
				failed := 0
				for _, r := range out {
					if r.Error != "" {
						failed++
					}
				}
				if failed > 0 {
					return fmt.Errorf("policy reload failed on %d of %d peers; they keep their previous policy", failed, len(out))
				}
				return nil
			}),
		}},
	}
}
