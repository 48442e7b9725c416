package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/allocator"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/p2p"
	"ipfs-cluster/internal/policy"
)

// Policy is the operator's Lua policy as the core uses it. Admit fails
// closed; Replication and Allocate return "no answer" (zeros, nil) when the
// hook is absent or failed, so the built-in behaviour applies. Failures are
// counted and logged by the implementation.
type Policy interface {
	Admit(ctx context.Context, pin api.Pin) (bool, string, error)
	Replication(ctx context.Context, pin api.Pin) (int, int, error)
	Allocate(ctx context.Context, pin api.Pin, cands []policy.Candidate) ([]peer.ID, error)
	// Policy is the loaded policy, nil when none is configured.
	Policy() *policy.Policy
	Reload() error
	Hash() string
}

// ErrRefused wraps admissions the policy refused (403).
var ErrRefused = errors.New("refused by the admission policy")

// admit asks the policy whether pin may enter the pinset. A policy that
// fails refuses: an admission rule that cannot run must not let
// everything through.
func (c *Cluster) admit(ctx context.Context, pin api.Pin) error {
	if c.policy == nil {
		return nil
	}
	ok, reason, err := c.policy.Admit(ctx, pin)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", ErrRefused, err)
	case !ok:
		return fmt.Errorf("%w: %s", ErrRefused, reason)
	}
	return nil
}

// policyReplication fills the factors a request left at 0 from the
// policy's replication hook; it reports whether the hook answered.
func (c *Cluster) policyReplication(ctx context.Context, pin *api.Pin) bool {
	if c.policy == nil || !c.policy.Policy().Has(policy.HookReplication) {
		return false
	}
	rmin, rmax, err := c.policy.Replication(ctx, *pin)
	if err != nil || (rmin == 0 && rmax == 0) {
		return false
	}
	if pin.ReplicationFactorMin == 0 {
		pin.ReplicationFactorMin = rmin
	}
	if pin.ReplicationFactorMax == 0 {
		pin.ReplicationFactorMax = rmax
	}
	return true
}

// policyAllocate lets the allocate hook reorder or shorten the built-in
// order of req; it returns builtin, the balanced choice, when the policy
// has no answer. Of the policy's peers the first replication_max are
// used, and fewer than replication_min is the not-enough-peers error.
func (c *Cluster) policyAllocate(ctx context.Context, req allocator.Request, metrics map[string][]api.Metric, builtin []peer.ID) ([]peer.ID, error) {
	if c.policy == nil || !c.policy.Policy().Has(policy.HookAllocate) {
		return builtin, nil
	}
	order := c.allocator.Order(req)
	ids, err := c.policy.Allocate(ctx, req.Pin, c.candidates(req, order, metrics))
	if err != nil || ids == nil {
		return builtin, nil
	}
	rmin, rmax := req.Pin.ReplicationFactorMin, req.Pin.ReplicationFactorMax
	if len(ids) < rmin {
		return nil, allocator.NotEnough(rmin, rmax, len(ids),
			fmt.Sprintf("the allocate policy kept %d of %d candidates", len(ids), len(order)))
	}
	return ids[:min(len(ids), rmax)], nil
}

// candidates describes the peers of order for the allocate hook from their
// latest metrics: tags, free space, pin queue, pin count and name.
func (c *Cluster) candidates(req allocator.Request, order []peer.ID, metrics map[string][]api.Metric) []policy.Candidate {
	byPeer := make(map[peer.ID]int, len(order))
	out := make([]policy.Candidate, len(order))
	for i, id := range order {
		byPeer[id] = i
		out[i] = policy.Candidate{ID: id}
	}
	for _, id := range req.Current {
		if i, ok := byPeer[id]; ok {
			out[i].Current = true
		}
	}
	for _, id := range req.Pin.UserAllocations {
		if i, ok := byPeer[id]; ok {
			out[i].Priority = true
		}
	}
	latest := func(name string) []api.Metric {
		if ms, ok := metrics[name]; ok {
			return ms
		}
		return c.monitor.LatestMetrics(name)
	}
	for _, name := range c.monitor.MetricNames() {
		if !strings.HasPrefix(name, "tag:") {
			continue
		}
		for _, m := range latest(name) {
			if i, ok := byPeer[m.Peer]; ok {
				if out[i].Tags == nil {
					out[i].Tags = map[string]string{}
				}
				out[i].Tags[strings.TrimPrefix(name, "tag:")] = m.Value
			}
		}
	}
	for name, set := range map[string]func(*policy.Candidate, int64){
		allocator.FreeSpaceMetric: func(cd *policy.Candidate, v int64) { cd.FreeSpace = v },
		"pinqueue":                func(cd *policy.Candidate, v int64) { cd.PinQueue = v },
		"numpin":                  func(cd *policy.Candidate, v int64) { cd.NumPin = v },
	} {
		for _, m := range latest(name) {
			if i, ok := byPeer[m.Peer]; ok {
				set(&out[i], metricNumber(m))
			}
		}
	}
	names := c.peerNames()
	for i := range out {
		out[i].Peername = names[out[i].ID].PeerName
	}
	return out
}

// metricNumber is a metric's value as a number (the informers send counts
// and bytes in decimal), else the weight it ranks by.
func metricNumber(m api.Metric) int64 {
	if v, err := strconv.ParseInt(m.Value, 10, 64); err == nil {
		return v
	}
	return m.Weight
}

// PolicyHash is the sha256 of this peer's loaded policy, "" when none.
func (c *Cluster) PolicyHash() string {
	if c.policy == nil {
		return ""
	}
	return c.policy.Hash()
}

// ReloadPolicy makes this peer, or every peer unless local, read its
// policy file again. A peer whose reload fails keeps the policy it had and
// reports the error; a peer without a policy file reports that.
func (c *Cluster) ReloadPolicy(ctx context.Context, local bool) []api.PolicyReload {
	if local {
		return []api.PolicyReload{c.reloadLocal()}
	}
	names := c.peerNames()
	var out []api.PolicyReload
	for _, r := range p2p.CallAll[api.PolicyReload](ctx, c.rpc, c.peerset(), rpcPolicyReload, struct{}{}, peerCallTimeout) {
		pr := r.Value
		if r.Err != nil {
			pr = api.PolicyReload{Peer: r.Peer, Peername: names[r.Peer].PeerName, Error: r.Err.Error()}
		}
		out = append(out, pr)
	}
	return out
}

func (c *Cluster) reloadLocal() api.PolicyReload {
	out := api.PolicyReload{Peer: c.cfg.Peer, Peername: c.cfg.PeerName}
	if c.policy == nil {
		// Nothing to reload is no failure: a cluster may run a policy
		// on some peers only. No error and no hash say so.
		return out
	}
	if err := c.policy.Reload(); err != nil { // the policy holder logged it
		out.Error = err.Error()
	}
	out.PolicySHA256 = c.PolicyHash()
	return out
}
