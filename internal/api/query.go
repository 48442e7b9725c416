package api

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// metaPrefix starts the query parameters that carry pin metadata.
const metaPrefix = "meta-"

// PinOptionsToQuery encodes pin options as the reference's REST client does
// for POST /pins/...: the replication factors, name, mode, shard size and
// user allocations are always present; expire-at, metadata, pin-update and
// origins only when set.
func PinOptionsToQuery(po PinOptions) url.Values {
	q := url.Values{}
	q.Set("replication-min", strconv.Itoa(po.ReplicationFactorMin))
	q.Set("replication-max", strconv.Itoa(po.ReplicationFactorMax))
	q.Set("name", po.Name)
	q.Set("mode", po.Mode.String())
	q.Set("shard-size", strconv.FormatUint(po.ShardSize, 10))
	allocs := make([]string, len(po.UserAllocations))
	for i, p := range po.UserAllocations {
		allocs[i] = p.String()
	}
	q.Set("user-allocations", strings.Join(allocs, ","))
	if !po.ExpireAt.IsZero() {
		q.Set("expire-at", po.ExpireAt.Format(time.RFC3339Nano))
	}
	for k, v := range po.Metadata {
		if k != "" {
			q.Set(metaPrefix+k, v)
		}
	}
	if po.PinUpdate.Defined() {
		q.Set("pin-update", po.PinUpdate.String())
	}
	if len(po.Origins) > 0 {
		origins := make([]string, len(po.Origins))
		for i, o := range po.Origins {
			origins[i] = o.String()
		}
		q.Set("origins", strings.Join(origins, ","))
	}
	return q
}

// PinOptionsFromQuery is the inverse of PinOptionsToQuery, as the REST API
// parses it. It also accepts "replication" (sets both factors, overriding
// replication-min and replication-max) and "expire-in" (a Go duration of at
// least 1s from now, ignored when expire-at is given). Unlike the reference,
// which silently drops user allocations that are not peer IDs and takes an
// unknown mode for recursive, every malformed value is an error naming its
// parameter. Whether expire-at lies in the future is for the caller to check.
func PinOptionsFromQuery(q url.Values) (PinOptions, error) {
	var po PinOptions
	var err error
	po.Name = q.Get("name")
	if po.Mode, err = PinModeFromString(q.Get("mode")); err != nil {
		return PinOptions{}, paramError("mode", err)
	}

	minName, maxName := "replication-min", "replication-max"
	if q.Get("replication") != "" {
		minName, maxName = "replication", "replication"
	}
	if po.ReplicationFactorMin, err = intParam(q, minName); err != nil {
		return PinOptions{}, err
	}
	if po.ReplicationFactorMax, err = intParam(q, maxName); err != nil {
		return PinOptions{}, err
	}

	if v := q.Get("shard-size"); v != "" {
		if po.ShardSize, err = strconv.ParseUint(v, 10, 64); err != nil {
			return PinOptions{}, paramError("shard-size", fmt.Errorf("%q is not a byte count", v))
		}
	}

	if v := q.Get("user-allocations"); v != "" {
		if po.UserAllocations, err = ParsePeerList(v); err != nil {
			return PinOptions{}, paramError("user-allocations", err)
		}
	}

	if v := q.Get("expire-at"); v != "" {
		if err := po.ExpireAt.UnmarshalText([]byte(v)); err != nil {
			return PinOptions{}, paramError("expire-at", fmt.Errorf("%q is not an RFC3339 time", v))
		}
	} else if v := q.Get("expire-in"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return PinOptions{}, paramError("expire-in", fmt.Errorf("%q is not a duration (examples: 90s, 10m, 24h)", v))
		}
		if d < time.Second {
			return PinOptions{}, paramError("expire-in", fmt.Errorf("%s is shorter than 1s", d))
		}
		po.ExpireAt = time.Now().Add(d)
	}

	po.Metadata = make(map[string]string)
	for k := range q {
		if key, ok := strings.CutPrefix(k, metaPrefix); ok && key != "" {
			po.Metadata[key] = q.Get(k)
		}
	}

	if v := q.Get("pin-update"); v != "" {
		if po.PinUpdate, err = DecodeCid(v); err != nil {
			return PinOptions{}, paramError("pin-update", err)
		}
	}

	if v := q.Get("origins"); v != "" {
		for _, s := range strings.Split(v, ",") {
			o, err := NewMultiaddr(s)
			if err != nil {
				return PinOptions{}, paramError("origins", err)
			}
			if _, err := o.ValueForProtocol(ma.P_P2P); err != nil {
				return PinOptions{}, paramError("origins", fmt.Errorf("%q has no /p2p/ peer ID", s))
			}
			po.Origins = append(po.Origins, o)
		}
	}
	return po, nil
}

func paramError(name string, err error) error {
	return fmt.Errorf("invalid query parameter %s: %w", name, err)
}

func intParam(q url.Values, name string) (int, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, paramError(name, fmt.Errorf("%q is not an integer", v))
	}
	return n, nil
}

// TrackerStatusFilterString renders a status filter as the comma list that
// the filter query parameter of GET /pins takes: the name of a single or
// composite status when there is one, otherwise the names of its bits.
// The undefined filter (everything) renders as "".
func TrackerStatusFilterString(f TrackerStatus) string {
	if f == TrackerStatusUndefined {
		return ""
	}
	if name := f.String(); name != "" {
		return name
	}
	var names []string
	for _, st := range TrackerStatusAll {
		if f&st != 0 {
			names = append(names, st.String())
		}
	}
	return strings.Join(names, ",")
}

// PinTypeFilterString renders a pin type filter as the comma list that the
// filter query parameter of GET /allocations takes.
func PinTypeFilterString(f PinType) string {
	if f&AllType == AllType {
		return "all"
	}
	var names []string
	for _, n := range pinTypeNames {
		if f&n.t != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}
