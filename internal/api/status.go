package api

import (
	"encoding/json"
	"fmt"
	"strings"
)

// TrackerStatus is the status of a pin on one peer. Values are bit flags so
// that a filter is the OR of the statuses it accepts.
type TrackerStatus uint64

// Tracker statuses, with the reference's bit values.
const (
	TrackerStatusUndefined    TrackerStatus = 0
	TrackerStatusClusterError TrackerStatus = 1 << (iota)
	TrackerStatusPinError
	TrackerStatusUnpinError
	TrackerStatusPinned
	TrackerStatusPinning
	TrackerStatusUnpinning
	TrackerStatusUnpinned
	TrackerStatusRemote
	TrackerStatusPinQueued
	TrackerStatusUnpinQueued
	TrackerStatusSharded
	TrackerStatusUnexpectedlyUnpinned
)

// Composite statuses accepted in filters.
const (
	TrackerStatusError  = TrackerStatusClusterError | TrackerStatusPinError | TrackerStatusUnpinError
	TrackerStatusQueued = TrackerStatusPinQueued | TrackerStatusUnpinQueued
)

var trackerStatusNames = []struct {
	s    TrackerStatus
	name string
}{
	{TrackerStatusUndefined, "undefined"},
	{TrackerStatusClusterError, "cluster_error"},
	{TrackerStatusPinError, "pin_error"},
	{TrackerStatusUnpinError, "unpin_error"},
	{TrackerStatusPinned, "pinned"},
	{TrackerStatusPinning, "pinning"},
	{TrackerStatusUnpinning, "unpinning"},
	{TrackerStatusUnpinned, "unpinned"},
	{TrackerStatusRemote, "remote"},
	{TrackerStatusPinQueued, "pin_queued"},
	{TrackerStatusUnpinQueued, "unpin_queued"},
	{TrackerStatusSharded, "sharded"},
	{TrackerStatusUnexpectedlyUnpinned, "unexpectedly_unpinned"},
	{TrackerStatusError, "error"},
	{TrackerStatusQueued, "queued"},
}

// TrackerStatusAll lists every single (non-composite) status.
var TrackerStatusAll = func() []TrackerStatus {
	var all []TrackerStatus
	for _, n := range trackerStatusNames[1:] {
		if n.s != TrackerStatusError && n.s != TrackerStatusQueued {
			all = append(all, n.s)
		}
	}
	return all
}()

// String returns the status name; a filter that no one name covers is the
// comma list of its statuses, which ParseTrackerStatusFilter reads back.
func (st TrackerStatus) String() string {
	var parts []string
	for _, n := range trackerStatusNames {
		if n.s == st {
			return n.name
		}
		if n.s != 0 && st&n.s == n.s && (n.s&(n.s-1)) == 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, ",")
}

// TrackerStatusFromString parses one status name; unknown names give
// TrackerStatusUndefined.
func TrackerStatusFromString(s string) TrackerStatus {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, n := range trackerStatusNames {
		if n.name == s {
			return n.s
		}
	}
	return TrackerStatusUndefined
}

// ParseTrackerStatusFilter parses a comma list of statuses into a filter.
// Empty means no filter (undefined). As in the reference, names it does
// not know are ignored, and returned so that a client can say so; only a
// list without one known name is an error.
func ParseTrackerStatusFilter(s string) (TrackerStatus, []string, error) {
	return parseFilter(s, "tracker status", TrackerStatusUndefined, func(name string) (TrackerStatus, bool) {
		st := TrackerStatusFromString(name)
		return st, st != TrackerStatusUndefined
	})
}

// parseFilter ORs the known names of a comma list, collecting the unknown
// ones; empty is the given none value.
func parseFilter[F ~uint64](s, kind string, none F, lookup func(string) (F, bool)) (F, []string, error) {
	if strings.TrimSpace(s) == "" {
		return none, nil, nil
	}
	var f F
	var known bool
	var unknown []string
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		v, ok := lookup(part)
		if !ok {
			unknown = append(unknown, part)
			continue
		}
		f, known = f|v, true
	}
	if !known {
		return 0, nil, fmt.Errorf("invalid filter value %q: no %s named in it", s, kind)
	}
	return f, unknown, nil
}

// Match reports whether st passes filter (undefined matches everything).
func (st TrackerStatus) Match(filter TrackerStatus) bool {
	return filter == TrackerStatusUndefined || st&filter != 0
}

// IsError reports whether st is one of the error statuses.
func (st TrackerStatus) IsError() bool { return st&TrackerStatusError != 0 }

// MarshalJSON encodes the status name.
func (st TrackerStatus) MarshalJSON() ([]byte, error) { return json.Marshal(st.String()) }

// UnmarshalJSON decodes a status name or a comma list of them (a
// filter); names it does not know, perhaps from a newer peer, count as
// undefined.
func (st *TrackerStatus) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("tracker status: %w", err)
	}
	*st = TrackerStatusUndefined
	for part := range strings.SplitSeq(s, ",") {
		*st |= TrackerStatusFromString(part)
	}
	return nil
}
