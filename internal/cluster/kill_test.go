package cluster_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/localcluster"
)

// TestRepinAfterKill9 kills one of three peer processes with SIGKILL and
// checks that its pins get a new allocation and reach PINNED within
// 2 × the ping metric's TTL plus the time to pin, while every pin keeps
// at least one copy pinned in a live kubo, and reported PINNED, all along.
func TestRepinAfterKill9(t *testing.T) {
	const (
		pingInterval = time.Second
		pingTTL      = 2 * pingInterval // the ping metric lives two intervals
		// pinTime bounds the allocation's commit and kubo's pin of an
		// identity CID, with room for a loaded 2-core machine.
		pinTime = 5 * time.Second
		nPins   = 24
	)
	if _, err := localcluster.Bin(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	peers, err := localcluster.Start(ctx, localcluster.Options{
		Work:     t.TempDir(),
		Peers:    3,
		LogLevel: "warn",
		Configure: func(_ int, c *config.Config) {
			c.Cluster.DisableRepinning = false
			c.Cluster.MonitorPingInterval = config.Duration(pingInterval)
			c.Monitor.PubsubMon.CheckInterval = config.Duration(pingInterval)
		},
	})
	t.Cleanup(func() { localcluster.Stop(peers) })
	if err != nil {
		t.Fatal(err)
	}
	var cids []string
	for i := range nPins {
		c := localcluster.IdentityCid("kill9-", i)
		resp, err := http.Post(peers[0].APIURL+"/pins/"+c+"?replication=2", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("pin %s: status %d", c, resp.StatusCode)
		}
		cids = append(cids, c)
	}
	byID := map[string]*localcluster.Peer{}
	for _, p := range peers {
		byID[p.ID] = p
	}
	// pinnedOn lists the peers among candidates that report c PINNED.
	pinnedOn := func(c string, candidates []*localcluster.Peer) []string {
		var out []string
		for _, p := range candidates {
			var gpi api.GlobalPinInfo
			if err := localcluster.GetJSON(ctx, p.APIURL+"/pins/"+c+"?local=true", &gpi); err != nil {
				continue
			}
			if info, ok := gpi.PeerMap[p.ID]; ok && info.Status == api.TrackerStatusPinned {
				out = append(out, p.ID)
			}
		}
		return out
	}
	allocations := func(c string) ([]string, error) {
		var pin api.Pin
		if err := localcluster.GetJSON(ctx, peers[0].APIURL+"/allocations/"+c, &pin); err != nil {
			return nil, err
		}
		var ids []string
		for _, a := range pin.Allocations {
			ids = append(ids, a.String())
		}
		return ids, nil
	}
	for _, c := range cids {
		waitUntil(t, 30*time.Second, c+" pinned on its two allocations", func() (bool, string) {
			allocs, err := allocations(c)
			if err != nil {
				return false, err.Error()
			}
			var on []*localcluster.Peer
			for _, a := range allocs {
				on = append(on, byID[a])
			}
			got := pinnedOn(c, on)
			return len(allocs) == 2 && len(got) == 2, fmt.Sprintf("allocations %v, pinned on %v", allocs, got)
		})
	}

	// Kill a peer other than the one the test talks to, among those that
	// hold allocations (with two copies of each pin, peer 1 or 2 does).
	var dead *localcluster.Peer
	var affected []string
	for _, cand := range peers[1:] {
		affected = affected[:0]
		for _, c := range cids {
			allocs, err := allocations(c)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(allocs, cand.ID) {
				affected = append(affected, c)
			}
		}
		if len(affected) > 0 {
			dead = cand
			break
		}
	}
	if dead == nil {
		t.Fatal("no pin was allocated to peer1 or peer2")
	}
	killed := time.Now()
	dead.Kill()
	live := slices.DeleteFunc(slices.Clone(peers), func(p *localcluster.Peer) bool { return p == dead })
	bound := 2*pingTTL + pinTime
	waitUntil(t, bound, fmt.Sprintf("%d pins of the killed peer repinned", len(affected)), func() (bool, string) {
		// A copy is a pin in a live kubo that its peer reports PINNED.
		for _, c := range cids {
			held := false
			for _, p := range live {
				out, err := p.Kubo.Run(ctx, "pin", "ls", "--type=recursive", "-q", c)
				held = held || (err == nil && strings.Contains(out, c))
			}
			if !held || len(pinnedOn(c, live)) == 0 {
				t.Fatalf("%s has no PINNED copy in a live kubo %s after the kill", c, time.Since(killed))
			}
		}
		for _, c := range affected {
			allocs, err := allocations(c)
			if err != nil {
				return false, err.Error()
			}
			if slices.Contains(allocs, dead.ID) {
				return false, fmt.Sprintf("%s still allocated to the killed peer: %v", c, allocs)
			}
			if got := pinnedOn(c, live); len(got) != 2 {
				return false, fmt.Sprintf("%s pinned on %v only", c, got)
			}
		}
		return true, ""
	})
	t.Logf("%d pins repinned and PINNED %s after kill -9 (bound %s)", len(affected), time.Since(killed).Round(time.Millisecond), bound)
}
