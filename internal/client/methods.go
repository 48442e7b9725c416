package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// ConnectGraph is the cluster connectivity graph (GET /health/graph).
type ConnectGraph = api.ConnectGraph

// BandwidthByProtocol is the reply of GET /health/bandwidth.
type BandwidthByProtocol = api.BandwidthByProtocol

// ID describes the peer the client talks to.
func (c *Client) ID(ctx context.Context) (api.ID, error) {
	var id api.ID
	err := c.do(ctx, request{method: http.MethodGet, path: "/id"}, &id)
	return id, err
}

// Peers streams the ID of every cluster peer. An unreachable peer comes as
// an ID with Error set.
func (c *Client) Peers(ctx context.Context, fn func(api.ID) error) error {
	r := request{method: http.MethodGet, path: "/peers"}
	return c.stream(ctx, r, decodeItem(r, fn))
}

// PeerRm removes a peer from the cluster.
func (c *Client) PeerRm(ctx context.Context, p peer.ID) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/peers/" + p.String()}, nil)
}

// Version returns the peer's IPFS Cluster version.
func (c *Client) Version(ctx context.Context) (api.VersionInfo, error) {
	var v api.VersionInfo
	err := c.do(ctx, request{method: http.MethodGet, path: "/version"}, &v)
	return v, err
}

// Pin adds ci to the pinset with the given options (POST /pins/{cid}).
func (c *Client) Pin(ctx context.Context, ci api.Cid, opts api.PinOptions) (api.Pin, error) {
	var pin api.Pin
	r := request{method: http.MethodPost, path: "/pins/" + ci.String(), query: api.PinOptionsToQuery(opts)}
	err := c.do(ctx, r, &pin)
	return pin, err
}

// PinPath pins what an IPFS path resolves to. A bare CID, with or without a
// sub-path, is taken as /ipfs/<cid>.
func (c *Client) PinPath(ctx context.Context, p string, opts api.PinOptions) (api.Pin, error) {
	escaped, err := escapedIPFSPath(p)
	if err != nil {
		return api.Pin{}, err
	}
	var pin api.Pin
	r := request{method: http.MethodPost, path: "/pins" + escaped, query: api.PinOptionsToQuery(opts)}
	err = c.do(ctx, r, &pin)
	return pin, err
}

// Unpin removes ci from the pinset and returns the pin as it was.
func (c *Client) Unpin(ctx context.Context, ci api.Cid) (api.Pin, error) {
	var pin api.Pin
	err := c.do(ctx, request{method: http.MethodDelete, path: "/pins/" + ci.String()}, &pin)
	return pin, err
}

// UnpinPath unpins what an IPFS path resolves to (see PinPath).
func (c *Client) UnpinPath(ctx context.Context, p string) (api.Pin, error) {
	escaped, err := escapedIPFSPath(p)
	if err != nil {
		return api.Pin{}, err
	}
	var pin api.Pin
	err = c.do(ctx, request{method: http.MethodDelete, path: "/pins" + escaped}, &pin)
	return pin, err
}

// Allocations streams the pinset, limited to the pin types in filter.
func (c *Client) Allocations(ctx context.Context, filter api.PinType, fn func(api.Pin) error) error {
	r := request{
		method: http.MethodGet,
		path:   "/allocations",
		query:  url.Values{"filter": {api.PinTypeFilterString(filter)}},
	}
	return c.stream(ctx, r, decodeItem(r, fn))
}

// Allocation returns the pin of ci as the pinset holds it.
func (c *Client) Allocation(ctx context.Context, ci api.Cid) (api.Pin, error) {
	var pin api.Pin
	err := c.do(ctx, request{method: http.MethodGet, path: "/allocations/" + ci.String()}, &pin)
	return pin, err
}

// Status returns the status of ci on every peer, or only on the contacted
// peer when local is set.
func (c *Client) Status(ctx context.Context, ci api.Cid, local bool) (api.GlobalPinInfo, error) {
	var gpi api.GlobalPinInfo
	err := c.do(ctx, request{method: http.MethodGet, path: "/pins/" + ci.String(), query: localQuery(local)}, &gpi)
	return gpi, err
}

// statusCidsPerRequest bounds the CIDs of one GET /pins?cids=: they go in
// the request line, which the server limits with max_header_bytes (4 KiB
// by default); 40 CIDv1 take about 2.4 KB.
const statusCidsPerRequest = 40

// StatusCids streams the status of the given CIDs, asking for a few dozen
// at a time.
func (c *Client) StatusCids(ctx context.Context, cids []api.Cid, local bool, fn func(api.GlobalPinInfo) error) error {
	for chunk := range slices.Chunk(cids, statusCidsPerRequest) {
		if err := c.statusAll(ctx, api.TrackerStatusUndefined, chunk, local, fn); err != nil {
			return err
		}
	}
	return nil
}

// StatusAll streams the status of every pin that has, on some peer, a
// status in filter (TrackerStatusUndefined: every pin).
func (c *Client) StatusAll(ctx context.Context, filter api.TrackerStatus, local bool, fn func(api.GlobalPinInfo) error) error {
	return c.statusAll(ctx, filter, nil, local, fn)
}

func (c *Client) statusAll(ctx context.Context, filter api.TrackerStatus, cids []api.Cid, local bool, fn func(api.GlobalPinInfo) error) error {
	strs := make([]string, len(cids))
	for i, ci := range cids {
		strs[i] = ci.String()
	}
	// The reference client always sends the three parameters.
	q := localQuery(local)
	q.Set("filter", api.TrackerStatusFilterString(filter))
	q.Set("cids", strings.Join(strs, ","))
	r := request{method: http.MethodGet, path: "/pins", query: q}
	return c.stream(ctx, r, decodeItem(r, fn))
}

// Recover re-queues the failed pin or unpin of ci and returns its status.
func (c *Client) Recover(ctx context.Context, ci api.Cid, local bool) (api.GlobalPinInfo, error) {
	var gpi api.GlobalPinInfo
	r := request{method: http.MethodPost, path: "/pins/" + ci.String() + "/recover", query: localQuery(local)}
	err := c.do(ctx, r, &gpi)
	return gpi, err
}

// RecoverAll re-queues every failed item and streams the status of those
// it re-queued.
func (c *Client) RecoverAll(ctx context.Context, local bool, fn func(api.GlobalPinInfo) error) error {
	r := request{method: http.MethodPost, path: "/pins/recover", query: localQuery(local)}
	return c.stream(ctx, r, decodeItem(r, fn))
}

// Alerts returns the alerts raised by expired metrics, newest first.
func (c *Client) Alerts(ctx context.Context) ([]api.Alert, error) {
	var alerts []api.Alert
	err := c.do(ctx, request{method: http.MethodGet, path: "/health/alerts"}, &alerts)
	return alerts, err
}

// MetricNames lists the names of the metrics the peer knows.
func (c *Client) MetricNames(ctx context.Context) ([]string, error) {
	var names []string
	err := c.do(ctx, request{method: http.MethodGet, path: "/monitor/metrics"}, &names)
	return names, err
}

// Metrics returns the latest valid metric called name of every peer.
func (c *Client) Metrics(ctx context.Context, name string) ([]api.Metric, error) {
	if name == "" {
		return nil, errors.New("metrics: empty metric name")
	}
	var metrics []api.Metric
	err := c.do(ctx, request{method: http.MethodGet, path: "/monitor/metrics/" + url.PathEscape(name)}, &metrics)
	return metrics, err
}

// RepoGC runs kubo's garbage collection on every peer, or only on the
// contacted one when local is set.
func (c *Client) RepoGC(ctx context.Context, local bool) (api.GlobalRepoGC, error) {
	var gc api.GlobalRepoGC
	err := c.do(ctx, request{method: http.MethodPost, path: "/ipfs/gc", query: localQuery(local)}, &gc)
	return gc, err
}

// PolicyReload makes every peer (or, with local, the peer the client talks
// to) read its policy file again, and returns each peer's outcome.
func (c *Client) PolicyReload(ctx context.Context, local bool) ([]api.PolicyReload, error) {
	var out []api.PolicyReload
	err := c.do(ctx, request{method: http.MethodPost, path: "/policy/reload", query: localQuery(local)}, &out)
	return out, err
}

// HealthGraph returns the connectivity graph of the cluster.
func (c *Client) HealthGraph(ctx context.Context) (ConnectGraph, error) {
	var g ConnectGraph
	err := c.do(ctx, request{method: http.MethodGet, path: "/health/graph"}, &g)
	return g, err
}

// BandwidthByProtocol returns the libp2p traffic of the peer per protocol.
func (c *Client) BandwidthByProtocol(ctx context.Context) (BandwidthByProtocol, error) {
	var bw BandwidthByProtocol
	err := c.do(ctx, request{method: http.MethodGet, path: "/health/bandwidth"}, &bw)
	return bw, err
}

// Health returns nil when the API answers its health check.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, request{method: http.MethodGet, path: "/health"}, nil)
}

func localQuery(local bool) url.Values {
	return url.Values{"local": {strconv.FormatBool(local)}}
}

// IPFSPath checks a path argument of PinPath and UnpinPath and returns it in
// canonical form: /ipfs/<cid>, /ipld/<cid> or /ipns/<name>, followed by an
// optional sub-path. A string that does not start with "/" is taken as
// /ipfs/<string>, so a bare CID works.
func IPFSPath(p string) (string, error) {
	full := p
	if !strings.HasPrefix(full, "/") {
		full = "/ipfs/" + full
	}
	clean := path.Clean(full)
	segs := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	if len(segs) < 2 {
		return "", fmt.Errorf("invalid path %q: want a CID, /ipfs/<cid>, /ipld/<cid> or /ipns/<name>, with an optional sub-path", p)
	}
	switch segs[0] {
	case "ipfs", "ipld":
		if _, err := api.DecodeCid(segs[1]); err != nil {
			return "", fmt.Errorf("invalid path %q: %w", p, err)
		}
	case "ipns":
	default:
		return "", fmt.Errorf("invalid path %q: unknown namespace %q, want ipfs, ipld or ipns", p, segs[0])
	}
	return clean, nil
}

// escapedIPFSPath is IPFSPath escaped for use in a URL path.
func escapedIPFSPath(p string) (string, error) {
	clean, err := IPFSPath(p)
	if err != nil {
		return "", err
	}
	segs := strings.Split(clean, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/"), nil
}
