// Command refclient drives the upstream IPFS Cluster Go REST client
// (github.com/ipfs-cluster/ipfs-cluster/api/rest/client) against a REST API
// endpoint and prints each result as JSON on stdout. It exits with status 1
// on any error (printed on stderr) and 2 on bad usage. It is test tooling
// for checking wire compatibility with the reference client.
//
// Usage:
//
//	refclient <rest-api-multiaddr> <command> [args]
//
// Commands:
//
//	id | peers | version | allocations | statusall [filter] | recoverall
//	bandwidth | peeradd <peer ID | self>
//	pin <cid> [name] [rmin] [rmax]
//	pinget <cid> | unpin <cid> | status <cid> | recover <cid>
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/ipfs-cluster/ipfs-cluster/api"
	"github.com/ipfs-cluster/ipfs-cluster/api/rest/client"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

const usage = `usage: refclient <rest-api-multiaddr> <command> [args]
commands:
  id | peers | version | allocations | statusall [filter] | recoverall
  bandwidth | peeradd <peer ID | self>
  pin <cid> [name] [rmin] [rmax]
  pinget <cid> | unpin <cid> | status <cid> | recover <cid>`

type usageError string

func (e usageError) Error() string { return string(e) }

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	out, err := run(os.Args[1], os.Args[2], os.Args[3:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		if _, ok := err.(usageError); ok {
			fmt.Fprintln(os.Stderr, usage)
			os.Exit(2)
		}
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(addr, cmd string, args []string) (any, error) {
	apiAddr, err := ma.NewMultiaddr(addr)
	if err != nil {
		return nil, fmt.Errorf("bad multiaddr %q: %w", addr, err)
	}
	c, err := client.NewDefaultClient(&client.Config{
		APIAddr: apiAddr,
		Timeout: 30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	switch cmd {
	case "id":
		return c.ID(ctx)
	case "version":
		return c.Version(ctx)
	case "peers":
		return collect(func(ch chan<- api.ID) error { return c.Peers(ctx, ch) })
	case "allocations":
		return collect(func(ch chan<- api.Pin) error { return c.Allocations(ctx, api.AllType, ch) })
	case "statusall":
		filter := api.TrackerStatusUndefined
		if len(args) > 0 {
			filter = api.TrackerStatusFromString(args[0])
			if filter == api.TrackerStatusUndefined {
				return nil, usageError("unknown status filter " + args[0])
			}
		}
		return collect(func(ch chan<- api.GlobalPinInfo) error { return c.StatusAll(ctx, filter, false, ch) })
	case "bandwidth":
		return c.BandwidthByProtocol(ctx)
	case "peeradd":
		if len(args) != 1 {
			return nil, usageError("peeradd <peer ID | self>")
		}
		// self: the peer the API belongs to, whose ID a test script
		// does not know beforehand.
		if args[0] == "self" {
			id, err := c.ID(ctx)
			if err != nil {
				return nil, err
			}
			return c.PeerAdd(ctx, id.ID)
		}
		pid, err := peer.Decode(args[0])
		if err != nil {
			return nil, err
		}
		return c.PeerAdd(ctx, pid)
	case "recoverall":
		return collect(func(ch chan<- api.GlobalPinInfo) error { return c.RecoverAll(ctx, false, ch) })
	case "pin":
		if len(args) < 1 || len(args) > 4 {
			return nil, usageError("pin <cid> [name] [rmin] [rmax]")
		}
		ci, err := api.DecodeCid(args[0])
		if err != nil {
			return nil, err
		}
		var opts api.PinOptions
		if len(args) > 1 {
			opts.Name = args[1]
		}
		if len(args) > 2 {
			if opts.ReplicationFactorMin, err = strconv.Atoi(args[2]); err != nil {
				return nil, usageError("bad rmin: " + args[2])
			}
		}
		if len(args) > 3 {
			if opts.ReplicationFactorMax, err = strconv.Atoi(args[3]); err != nil {
				return nil, usageError("bad rmax: " + args[3])
			}
		}
		return c.Pin(ctx, ci, opts)
	}

	if !isOneArgCmd(cmd) {
		return nil, usageError("unknown command " + cmd)
	}
	if len(args) != 1 {
		return nil, usageError(cmd + " takes exactly one <cid>")
	}
	ci, err := api.DecodeCid(args[0])
	if err != nil {
		return nil, err
	}
	switch cmd {
	case "pinget":
		return c.Allocation(ctx, ci)
	case "unpin":
		return c.Unpin(ctx, ci)
	case "status":
		return c.Status(ctx, ci, false)
	default: // "recover"
		return c.Recover(ctx, ci, false)
	}
}

func isOneArgCmd(cmd string) bool {
	switch cmd {
	case "pinget", "unpin", "status", "recover":
		return true
	}
	return false
}

// collect runs a streaming client call and gathers everything it sends.
// The client closes the channel when the call returns.
func collect[T any](call func(chan<- T) error) ([]T, error) {
	ch := make(chan T, 16)
	errc := make(chan error, 1)
	go func() { errc <- call(ch) }()
	items := []T{}
	for it := range ch {
		items = append(items, it)
	}
	return items, <-errc
}
