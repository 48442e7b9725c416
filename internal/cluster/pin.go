package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/config"
)

// Pin adds c to the pinset with opts, or updates its options when it is
// there already. It returns the pin as committed. The pin is durable when
// Pin returns without error.
func (c *Cluster) Pin(ctx context.Context, ci api.Cid, opts api.PinOptions) (api.Pin, error) {
	return c.pin(ctx, api.PinWithOpts(ci, opts))
}

// PinPath resolves an /ipfs/, /ipns/ or /ipld/ path through kubo and pins
// the CID it ends at.
func (c *Cluster) PinPath(ctx context.Context, path string, opts api.PinOptions) (api.Pin, error) {
	ci, err := c.resolve(ctx, path)
	if err != nil {
		return api.Pin{}, err
	}
	return c.Pin(ctx, ci, opts)
}

// pin is the pin flow: validate, admit, fill replication defaults, carry
// over a pin update, then commit.
func (c *Cluster) pin(ctx context.Context, pin api.Pin) (api.Pin, error) {
	if c.cfg.FollowerMode {
		return api.Pin{}, ErrFollowerMode
	}
	if !pin.Cid.Defined() {
		return api.Pin{}, fmt.Errorf("%w: no CID given", ErrInvalidRequest)
	}
	if err := c.admitPin(ctx, &pin); err != nil {
		return api.Pin{}, err
	}
	if pin.PinUpdate.Defined() {
		if err := c.carryOver(&pin); err != nil {
			return api.Pin{}, err
		}
	}
	return c.commit(ctx, pin, !pin.PinUpdate.Defined())
}

// admitPin checks what a request can be refused for before anything is
// stored, the admission policy included, and resolves the replication
// factors. An add admits its pin before the content (and so the CID) is
// known.
func (c *Cluster) admitPin(ctx context.Context, pin *api.Pin) error {
	what := "add" // the content, and so the CID, is not known yet
	if pin.Cid.Defined() {
		what = "pin " + pin.Cid.String()
	}
	if !pin.ExpireAt.IsZero() && pin.ExpireAt.Before(time.Now()) {
		return fmt.Errorf("%w: %s: expire_at %s is in the past", ErrInvalidRequest, what, pin.ExpireAt.Format(time.RFC3339))
	}
	if err := c.admit(ctx, *pin); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := c.replicationDefaults(ctx, pin); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// commit keeps what an existing pin of the same CID requires, allocates
// (unless allocate is false: the allocations are set already), stamps and
// commits the pin through consensus.
func (c *Cluster) commit(ctx context.Context, pin api.Pin, allocate bool) (api.Pin, error) {
	defer c.pinLocks.LockKey(pin.Cid.KeyString())()
	existing, err := c.state.Get(pin.Cid)
	switch {
	case errors.Is(err, ErrNotFound):
		existing = api.Pin{}
	case err != nil:
		return api.Pin{}, fmt.Errorf("pin %s: %w", pin.Cid, err)
	default:
		if err := checkRepin(existing, pin); err != nil {
			return api.Pin{}, err
		}
	}
	if allocate {
		allocs, err := c.allocate(ctx, pin, existing.Allocations)
		if err != nil {
			return api.Pin{}, fmt.Errorf("pin %s: %w", pin.Cid, err)
		}
		pin.Allocations = allocs
	}
	pin.UserAllocations = nil
	pin.Timestamp, pin.Moved = time.Now().UTC(), false
	pin.Replaced = existing.Timestamp // zero for a new pin; see stale.go
	c.recent.note(pin.Cid, recentOp{replaced: existing.Timestamp, version: pin.Timestamp, at: pin.Timestamp})
	if err := c.consensus.LogPin(ctx, pin); err != nil {
		c.recent.forget(pin.Cid)
		return api.Pin{}, fmt.Errorf("pin %s: commit: %w", pin.Cid, err)
	}
	return pin, nil
}

// replicationDefaults replaces factors left at 0 with the replication
// policy's answer, else the configured ones, and validates the result.
func (c *Cluster) replicationDefaults(ctx context.Context, pin *api.Pin) error {
	// hint tells the client where the factors it did not give came from.
	hint := ""
	if (pin.ReplicationFactorMin == 0) != (pin.ReplicationFactorMax == 0) {
		hint = fmt.Sprintf(" (a factor left at 0 takes the cluster default %d/%d)", c.cfg.ReplicationFactorMin, c.cfg.ReplicationFactorMax)
	}
	if pin.ReplicationFactorMin == 0 || pin.ReplicationFactorMax == 0 {
		if c.policyReplication(ctx, pin) {
			hint = " (factors left at 0 came from the replication policy)"
		}
	}
	if pin.ReplicationFactorMin == 0 {
		pin.ReplicationFactorMin = c.cfg.ReplicationFactorMin
	}
	if pin.ReplicationFactorMax == 0 {
		pin.ReplicationFactorMax = c.cfg.ReplicationFactorMax
	}
	if err := config.ValidateReplication(pin.ReplicationFactorMin, pin.ReplicationFactorMax); err != nil {
		return fmt.Errorf("%w: %v%s", ErrInvalidRequest, err, hint)
	}
	return nil
}

// carryOver applies a pin update: the new CID takes every option and the
// allocations of the pin it updates; only the name and a future expiry may
// differ.
func (c *Cluster) carryOver(pin *api.Pin) error {
	from, err := c.state.Get(pin.PinUpdate)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: pin update from %s: %w", ErrInvalidRequest, pin.PinUpdate, err)
	}
	if err != nil {
		return fmt.Errorf("pin update from %s: %w", pin.PinUpdate, err)
	}
	if from.Type != api.DataType {
		return fmt.Errorf("%w: pin update from %s: only pins of type pin can be updated, not %s", ErrInvalidRequest, pin.PinUpdate, from.Type)
	}
	name, expire := pin.Name, pin.ExpireAt
	update := pin.PinUpdate
	cid := pin.Cid
	*pin = from
	pin.Cid, pin.PinUpdate = cid, update
	if name != "" {
		pin.Name = name
	}
	if !expire.IsZero() {
		pin.ExpireAt = expire
	}
	return nil
}

// checkRepin refuses option changes that pinning again cannot make.
func checkRepin(existing, pin api.Pin) error {
	if existing.Type != pin.Type {
		return fmt.Errorf("%w: cannot repin %s as %s: it is tracked as %s", ErrInvalidRequest, pin.Cid, pin.Type, existing.Type)
	}
	if existing.MaxDepth != 0 && pin.MaxDepth == 0 {
		return fmt.Errorf("%w: cannot change %s from recursive to direct: unpin it first", ErrInvalidRequest, pin.Cid)
	}
	return nil
}

// Unpin removes c from the pinset and returns the pin as it was.
func (c *Cluster) Unpin(ctx context.Context, ci api.Cid) (api.Pin, error) {
	if c.cfg.FollowerMode {
		return api.Pin{}, ErrFollowerMode
	}
	defer c.pinLocks.LockKey(ci.KeyString())()
	pin, err := c.state.Get(ci)
	if err != nil {
		return api.Pin{}, fmt.Errorf("unpin %s: %w", ci, err)
	}
	switch pin.Type {
	case api.ShardType, api.ClusterDAGType:
		return api.Pin{}, fmt.Errorf("%w: %s is a %s: unpin the sharded content's root instead", ErrInvalidRequest, ci, pin.Type)
	}
	at := time.Now()
	c.recent.note(ci, recentOp{replaced: pin.Timestamp, at: at})
	if err := c.consensus.LogUnpin(ctx, pin, at); err != nil {
		c.recent.forget(ci)
		return api.Pin{}, fmt.Errorf("unpin %s: commit: %w", ci, err)
	}
	return pin, nil
}

// UnpinPath resolves a path and unpins the CID it ends at.
func (c *Cluster) UnpinPath(ctx context.Context, path string) (api.Pin, error) {
	ci, err := c.resolve(ctx, path)
	if err != nil {
		return api.Pin{}, err
	}
	return c.Unpin(ctx, ci)
}

func (c *Cluster) resolve(ctx context.Context, path string) (api.Cid, error) {
	ci, err := c.ipfs.Resolve(ctx, path)
	switch {
	case errors.Is(err, api.ErrBadPath):
		return api.CidUndef, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	case err != nil:
		return api.CidUndef, err // it names the path
	}
	return ci, nil
}

// Resume notes a change of this peer's that an earlier run acknowledged and
// the consensus commits again at start (see crdt.Applier), as commit and
// Unpin note theirs: a concurrent change made before it that undoes it is
// put right.
func (c *Cluster) Resume(ci api.Cid, replaced, version, at time.Time) {
	c.recent.note(ci, recentOp{replaced: replaced, version: version, at: at})
}

// ApplyPin writes a committed pin to the local state and hands it to the
// tracker. Every consensus implementation calls it.
func (c *Cluster) ApplyPin(pin api.Pin) error {
	var current api.Pin
	var had bool
	if c.recent.other(pin) { // checkStale may commit this peer's change again
		var err error
		current, err = c.state.Get(pin.Cid)
		had = err == nil
	}
	if err := c.state.PutApplied(pin); err != nil {
		return fmt.Errorf("apply pin %s: %w", pin.Cid, err)
	}
	c.recent.applied(pin.Cid, pin.Timestamp, false)
	if pin.Moved {
		c.recent.moving(pin.Cid, false)
	}
	c.checkStale(pin, current, had)
	if !pin.ExpireAt.IsZero() {
		c.expiry.note(pin.Cid, pin.ExpireAt)
	}
	if err := c.tracker.Track(pin); err != nil {
		// The pin is committed and stored; the tracker recorded the failure
		// and retries it.
		c.log.Warn().Err(err).Stringer("cid", pin.Cid).Msg("track")
	}
	return nil
}

// ApplyUnpin removes a committed unpin from the local state and tells the
// tracker.
func (c *Cluster) ApplyUnpin(pin api.Pin) error {
	var askedHere time.Time
	if op, ok := c.recent.get(pin.Cid); ok && op.version.IsZero() && !op.applied {
		askedHere = op.at // this peer's unpin: recallUnpins remembers it
	}
	if err := c.state.DeleteApplied(pin, askedHere); err != nil {
		return fmt.Errorf("apply unpin %s: %w", pin.Cid, err)
	}
	c.recent.applied(pin.Cid, time.Time{}, true)
	c.recent.moving(pin.Cid, false)
	if err := c.tracker.Untrack(pin); err != nil {
		c.log.Warn().Err(err).Stringer("cid", pin.Cid).Msg("untrack")
	}
	return nil
}
