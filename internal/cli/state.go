package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/consensus/crdt"
	"ipfs-cluster/internal/logging"
	"ipfs-cluster/internal/state"
)

func stateCommand() *Command {
	return &Command{
		Name:  "state",
		Usage: "export, import, delete or inspect the pinset (the daemon must be stopped)",
		Subcommands: []*Command{
			{
				Name:  "export",
				Usage: "write the pinset as NDJSON, one pin per line",
				Flags: []Flag{{Name: "file", Aliases: []string{"f"}, Kind: StringFlag, Usage: "write to this file instead of stdout"}},
				Action: func(c *Context) error {
					ns, err := crdtNamespace(c)
					if err != nil {
						return err
					}
					return withState(c, func(db *state.DB) error {
						// After a crash, acknowledged pins may still be
						// only in the journal, which the next start
						// commits: they belong in the export.
						pending, err := crdt.Pending(db, ns)
						if err != nil {
							return fmt.Errorf("export: %w", err)
						}
						w := c.Stdout
						if path := c.String("file"); path != "" {
							f, err := os.Create(path)
							if err != nil {
								return fmt.Errorf("export: %w", err)
							}
							defer f.Close()
							bw := bufio.NewWriter(f)
							if err := db.Export(context.Background(), bw, pending); err != nil {
								return err
							}
							if err := bw.Flush(); err != nil {
								return fmt.Errorf("export: %w", err)
							}
							return f.Sync()
						}
						bw := bufio.NewWriter(w)
						if err := db.Export(context.Background(), bw, pending); err != nil {
							return err
						}
						return bw.Flush()
					})
				},
			},
			{
				Name:      "import",
				Usage:     "replace the pinset with an NDJSON export (from a file or stdin); the next start shares it with the other peers",
				ArgsUsage: "[file]",
				Flags: []Flag{
					{Name: "replication-min", Aliases: []string{"rmin"}, Kind: IntFlag, Default: "0", Usage: "set this replication_factor_min on every pin (0 = keep)"},
					{Name: "replication-max", Aliases: []string{"rmax"}, Kind: IntFlag, Default: "0", Usage: "set this replication_factor_max on every pin (0 = keep)"},
					{Name: "allocations", Aliases: []string{"allocs"}, Kind: StringFlag, Usage: "comma-separated peer IDs to allocate every pin to"},
				},
				Action: runStateImport,
			},
			{
				Name:  "cleanup",
				Usage: "delete the pinset and the consensus data; the next start begins as a first start",
				Action: func(c *Context) error {
					return withState(c, func(db *state.DB) error {
						n := db.Len()
						if !c.Bool("force") && n > 0 {
							return fmt.Errorf("the state holds %d pins: run with --force to delete them", n)
						}
						ns, err := crdtNamespace(c)
						if err != nil {
							return err
						}
						if err := db.Clear(context.Background()); err != nil {
							return err
						}
						if err := crdt.Cleanup(db, ns); err != nil {
							return err
						}
						fmt.Fprintf(c.Stderr, "deleted %d pins\n", n)
						return nil
					})
				},
			},
			crdtStateCommand(),
		},
	}
}

// crdtStateCommand inspects the CRDT store of a stopped peer, as the
// reference's `state crdt` does.
func crdtStateCommand() *Command {
	return &Command{
		Name:  "crdt",
		Usage: "inspect the CRDT store: heads, dirty flag, DAG (the daemon must be stopped)",
		Subcommands: []*Command{
			{
				Name:  "info",
				Usage: "print the number of heads, the max height, the dirty flag and the heads",
				Action: func(c *Context) error {
					return withInspector(c, func(ctx context.Context, in *crdt.Inspector) error {
						info, err := in.Info(ctx)
						if err != nil {
							return err
						}
						fmt.Fprintf(c.Stdout, "Number of heads: %d. Current max-height: %d. Dirty: %t\nHeads: %s\n",
							len(info.Heads), info.MaxHeight, info.Dirty, info.Heads)
						if info.Unclean {
							fmt.Fprintln(c.Stdout, "The last run did not shut down cleanly: the next start repairs the DAG.")
						}
						return nil
					})
				},
			},
			{
				Name:  "dot",
				Usage: "write the CRDT DAG in the DOT language (large DAGs make large files)",
				Flags: []Flag{{Name: "file", Aliases: []string{"f"}, Kind: StringFlag, Usage: "write to this file instead of stdout"}},
				Action: func(c *Context) error {
					return withInspector(c, func(ctx context.Context, in *crdt.Inspector) error {
						path := c.String("file")
						if path == "" {
							bw := bufio.NewWriterSize(c.Stdout, 1<<18)
							if err := in.WriteDOT(ctx, bw); err != nil {
								return err
							}
							return bw.Flush()
						}
						f, err := os.Create(path)
						if err != nil {
							return fmt.Errorf("crdt dot: %w", err)
						}
						bw := bufio.NewWriterSize(f, 1<<18)
						err = in.WriteDOT(ctx, bw)
						if err == nil {
							err = bw.Flush()
						}
						if cerr := f.Close(); err == nil {
							err = cerr
						}
						return err
					})
				},
			},
			{
				Name:  "mark-dirty",
				Usage: "make the next start repair the DAG",
				Action: func(c *Context) error {
					return withInspector(c, func(ctx context.Context, in *crdt.Inspector) error {
						in.MarkDirty(ctx)
						fmt.Fprintln(c.Stdout, "Datastore marked 'dirty'")
						return nil
					})
				},
			},
			{
				Name:  "mark-clean",
				Usage: "spare the next start a repair of the DAG",
				Action: func(c *Context) error {
					return withInspector(c, func(ctx context.Context, in *crdt.Inspector) error {
						if err := in.MarkClean(ctx); err != nil {
							return err
						}
						fmt.Fprintln(c.Stdout, "Datastore marked 'clean'")
						return nil
					})
				},
			},
		},
	}
}

// withInspector opens the peer's CRDT store offline, under the folder lock.
func withInspector(c *Context, fn func(context.Context, *crdt.Inspector) error) error {
	ns, err := crdtNamespace(c)
	if err != nil {
		return err
	}
	return withState(c, func(db *state.DB) error {
		in, err := crdt.Inspect(db, ns, logging.For("crdt"))
		if err != nil {
			return err
		}
		err = fn(context.Background(), in)
		if cerr := in.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// crdtNamespace is the datastore namespace of the peer's CRDT consensus,
// from its configuration.
func crdtNamespace(c *Context) (string, error) {
	dir, err := configDir(c)
	if err != nil {
		return "", err
	}
	cfg, err := config.Load(dir, c.Getenv)
	if err != nil {
		return "", err
	}
	return cfg.Consensus.CRDT.DatastoreNamespace, nil
}

// withState opens the peer's store under the folder lock.
func withState(c *Context, fn func(*state.DB) error) error {
	if err := setupLogging(c); err != nil {
		return err
	}
	dir, err := configDir(c)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("no configuration folder at %s: run 'ipfs-cluster init' first", dir)
	}
	return openState(dir, fn)
}

// openState opens the store of the peer configured in dir, which must not
// run, under the folder lock.
func openState(dir string, fn func(*state.DB) error) error {
	lock, err := lockFolder(dir)
	if err != nil {
		return err
	}
	defer lock.release()
	db, err := state.Open(filepath.Join(dir, "pebble"), logging.For("state"))
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(db)
}

func runStateImport(c *Context) error {
	if len(c.Args) > 1 {
		return Usagef("import takes at most one file, got %d arguments", len(c.Args))
	}
	var allocs []peer.ID
	if s := c.String("allocations"); s != "" {
		var err error
		if allocs, err = api.ParsePeerList(s); err != nil {
			return Usagef("--allocations: %v", err)
		}
	}
	rmin, rmax := c.Int("replication-min"), c.Int("replication-max")
	var in io.Reader = c.Stdin
	if len(c.Args) == 1 {
		f, err := os.Open(c.Args[0])
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		in = f
	}
	dir, err := configDir(c)
	if err != nil {
		return err
	}
	cfg, err := config.Load(dir, c.Getenv)
	if err != nil {
		return err
	}
	// A follower's own changes never reach the trusted peers, and their
	// removals never reach its own: imported pins would stay on it for
	// good, whatever the cluster decides.
	if cfg.Cluster.FollowerMode || cfg.Source != "" {
		why := "cluster.follower_mode is set"
		if cfg.Source != "" {
			why = "its configuration comes from " + cfg.Source + ", as a follower's does"
		}
		return fmt.Errorf("state import into %s: %s: a follower's pinset is what the trusted peers decide, and pins imported here would stay on it for good; import on a trusted peer, whose service.json holds its configuration", dir, why)
	}
	ns := cfg.Consensus.CRDT.DatastoreNamespace
	return withState(c, func(db *state.DB) error {
		if n := db.Len(); n > 0 && !c.Bool("force") {
			return fmt.Errorf("the state holds %d pins and import replaces them: run with --force", n)
		}
		// Decode everything first: a malformed file must not leave the
		// state half replaced.
		tmp, err := os.CreateTemp("", "ipfs-cluster-import-*.ndjson")
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		bw := bufio.NewWriter(tmp)
		enc := json.NewEncoder(bw)
		err = state.DecodeExport(in, func(p api.Pin) error {
			if rmin != 0 || rmax != 0 {
				if rmin != 0 {
					p.ReplicationFactorMin = rmin
				}
				if rmax != 0 {
					p.ReplicationFactorMax = rmax
				}
				if err := config.ValidateReplication(p.ReplicationFactorMin, p.ReplicationFactorMax); err != nil {
					return fmt.Errorf("--replication-min/--replication-max on %s: %w", p.Cid, err)
				}
			}
			if allocs != nil {
				p.Allocations = allocs
			}
			return enc.Encode(p)
		})
		if err != nil {
			return fmt.Errorf("import: %w (the state was not changed)", err)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if err := db.Clear(context.Background()); err != nil {
			return err
		}
		// The pins go into the local state, and into the consensus's
		// journal so that the next start makes them part of the shared
		// pinset and announces them to the other peers.
		im, err := crdt.NewImporter(db, ns)
		if err != nil {
			return err
		}
		batch := make([]api.Pin, 0, 1024)
		err = state.DecodeExport(bufio.NewReader(tmp), func(p api.Pin) error {
			if err := im.Add(p); err != nil {
				return err
			}
			batch = append(batch, p)
			if len(batch) == cap(batch) {
				err := db.PutMany(batch)
				batch = batch[:0]
				return err
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			err = db.PutMany(batch)
		}
		if cerr := im.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("import: %w", errors.Join(err, errors.New("the state is partially imported: run the import again")))
		}
		// The state was emptied first: it holds each CID once, however
		// often the file names it.
		fmt.Fprintf(c.Stderr, "imported %d pins\n", db.Len())
		if (rmin != 0 || rmax != 0) && allocs == nil {
			fmt.Fprintln(c.Stderr, "the pins keep their allocations: those the new replication factors do not fit are reallocated only when pinned again")
		}
		return nil
	})
}
