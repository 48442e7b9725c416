// Package api holds the wire types every component shares: pins, pin
// status, peer identity and metrics, with the JSON shapes of IPFS Cluster
// 1.1.x so that clients written for it decode them unchanged.
package api

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Version is the IPFS Cluster version this peer is wire-compatible with.
const Version = "1.1.6"

// RPCProtocol is the libp2p protocol ID of the peer RPC.
const RPCProtocol = "/ipfscluster/1.0/rpc"

// Cid wraps a CID so that it encodes in JSON as a plain string (null when
// undefined) and decodes from either a string or the {"/": "..."} form.
type Cid struct{ cid.Cid }

// CidUndef is the undefined CID.
var CidUndef = Cid{cid.Undef}

// NewCid wraps c.
func NewCid(c cid.Cid) Cid { return Cid{c} }

// DecodeCid parses a CID string.
func DecodeCid(s string) (Cid, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return CidUndef, fmt.Errorf("error decoding Cid: %w", err)
	}
	return Cid{c}, nil
}

// MarshalJSON encodes the CID as a string, or null when undefined.
func (c Cid) MarshalJSON() ([]byte, error) {
	if !c.Defined() {
		return []byte("null"), nil
	}
	return []byte(`"` + c.String() + `"`), nil
}

// UnmarshalJSON accepts a CID string, {"/": "<cid>"}, null or "".
func (c *Cid) UnmarshalJSON(b []byte) error {
	if string(b) == "null" || string(b) == `""` {
		*c = CidUndef
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var link struct {
			Slash string `json:"/"`
		}
		if err2 := json.Unmarshal(b, &link); err2 != nil || link.Slash == "" {
			return fmt.Errorf("cid: expected a string: %w", err)
		}
		s = link.Slash
	}
	d, err := DecodeCid(s)
	if err != nil {
		return err
	}
	*c = d
	return nil
}

// Multiaddr wraps a multiaddress so that it encodes in JSON as a string.
type Multiaddr struct{ ma.Multiaddr }

// NewMultiaddr parses a multiaddress.
func NewMultiaddr(s string) (Multiaddr, error) {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return Multiaddr{}, fmt.Errorf("invalid multiaddress %q: %w", s, err)
	}
	return Multiaddr{m}, nil
}

// MarshalJSON encodes the multiaddress as a string.
func (m Multiaddr) MarshalJSON() ([]byte, error) {
	if m.Multiaddr == nil {
		return []byte(`""`), nil
	}
	return json.Marshal(m.String())
}

// UnmarshalJSON decodes a multiaddress string.
func (m *Multiaddr) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("multiaddress: expected a string: %w", err)
	}
	if s == "" {
		*m = Multiaddr{}
		return nil
	}
	d, err := NewMultiaddr(s)
	if err != nil {
		return err
	}
	*m = d
	return nil
}

// PinType says what a pin in the pinset represents.
type PinType uint64

// Pin types, as bit flags so that filters can OR them.
const (
	BadType        PinType = 1 << iota
	DataType               // normal content
	MetaType               // root of sharded content, never pinned in IPFS
	ClusterDAGType         // DAG linking every shard root
	ShardType              // one shard
	AllType        = DataType | MetaType | ClusterDAGType | ShardType
)

var pinTypeNames = []struct {
	t    PinType
	name string
}{{DataType, "pin"}, {MetaType, "meta-pin"}, {ClusterDAGType, "clusterdag-pin"}, {ShardType, "shard-pin"}}

// String returns the wire name of a single pin type.
func (t PinType) String() string {
	for _, n := range pinTypeNames {
		if n.t == t {
			return n.name
		}
	}
	if t == AllType {
		return "all"
	}
	return "bad-type"
}

// PinTypeFromString parses one pin type name, "all" included.
func PinTypeFromString(s string) PinType {
	if s == "all" {
		return AllType
	}
	for _, n := range pinTypeNames {
		if n.name == s {
			return n.t
		}
	}
	return BadType
}

// ParsePinTypeFilter parses a comma-separated list of pin types; empty
// means all. Unknown names are ignored and returned, as with
// ParseTrackerStatusFilter; a list without one known name is an error.
func ParsePinTypeFilter(s string) (PinType, []string, error) {
	return parseFilter(s, "pin type (pin, meta-pin, clusterdag-pin, shard-pin or all)", AllType, func(name string) (PinType, bool) {
		t := PinTypeFromString(name)
		return t, t != BadType
	})
}

// MarshalJSON encodes the type name.
func (t PinType) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }

// UnmarshalJSON decodes a type name.
func (t *PinType) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("pin type: %w", err)
	}
	*t = PinTypeFromString(s)
	return nil
}

// PinMode is how kubo pins the content.
type PinMode int

// Pin modes.
const (
	PinModeRecursive PinMode = 0
	PinModeDirect    PinMode = 1
)

// PinModeFromString parses "recursive" (or "") and "direct".
func PinModeFromString(s string) (PinMode, error) {
	switch strings.ToLower(s) {
	case "", "recursive":
		return PinModeRecursive, nil
	case "direct":
		return PinModeDirect, nil
	}
	return PinModeRecursive, fmt.Errorf("invalid pin mode %q: want recursive or direct", s)
}

// String returns the mode name.
func (m PinMode) String() string {
	if m == PinModeDirect {
		return "direct"
	}
	return "recursive"
}

// MarshalJSON encodes the mode name.
func (m PinMode) MarshalJSON() ([]byte, error) { return json.Marshal(m.String()) }

// UnmarshalJSON decodes a mode name.
func (m *PinMode) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("pin mode: %w", err)
	}
	mode, err := PinModeFromString(s)
	if err != nil {
		return err
	}
	*m = mode
	return nil
}

// PinDepth is the depth kubo pins to: -1 recursive, 0 direct, N limited.
type PinDepth int

// PinOptions are the user-settable options of a pin.
type PinOptions struct {
	ReplicationFactorMin int               `json:"replication_factor_min"`
	ReplicationFactorMax int               `json:"replication_factor_max"`
	Name                 string            `json:"name"`
	Mode                 PinMode           `json:"mode"`
	ShardSize            uint64            `json:"shard_size"`
	UserAllocations      []peer.ID         `json:"user_allocations"`
	ExpireAt             time.Time         `json:"expire_at"`
	Metadata             map[string]string `json:"metadata"`
	PinUpdate            Cid               `json:"pin_update"`
	Origins              []Multiaddr       `json:"origins"`
}

// Pin is one item of the shared pinset.
type Pin struct {
	PinOptions
	Cid         Cid       `json:"cid"`
	Type        PinType   `json:"type"`
	Allocations []peer.ID `json:"allocations"`
	MaxDepth    PinDepth  `json:"max_depth"`
	Reference   *Cid      `json:"reference"`
	Timestamp   time.Time `json:"timestamp"`
	// Moved says the cluster itself re-allocated this version (a repin),
	// keeping the timestamp of the version it moved. Peers only: it is
	// not part of the JSON.
	Moved bool `json:"-"`
	// Restored is when a state import restored this version. It makes
	// the version distinct from the exported one, which the shared
	// pinset may have seen removed since: the same bytes would make the
	// same CRDT delta, and the removal would still apply to it. Peers
	// only: it is not part of the JSON.
	Restored time.Time `json:"-"`
	// Replaced is the timestamp of the version this one updated (zero for
	// a new pin): a peer that changed the pin meanwhile tells a change
	// made without knowing its own from one made after it. Peers only:
	// it is not part of the JSON.
	Replaced time.Time `json:"-"`
}

// Made is when this version was made: its timestamp, or when a state
// import restored it, whichever is later. Of two concurrent changes of a
// pin, the one made later stands.
func (p *Pin) Made() time.Time {
	if p.Restored.After(p.Timestamp) {
		return p.Restored
	}
	return p.Timestamp
}

// PinWithOpts returns a data pin for c with the given options, its depth
// following the mode.
func PinWithOpts(c Cid, opts PinOptions) Pin {
	p := Pin{PinOptions: opts, Cid: c, Type: DataType, MaxDepth: -1}
	if opts.Mode == PinModeDirect {
		p.MaxDepth = 0
	}
	return p
}

// IsDirect reports whether kubo pins p directly: mode direct, or depth 0
// (kubo has no depth-limited pins).
func (p *Pin) IsDirect() bool { return p.MaxDepth == 0 || p.Mode == PinModeDirect }

// IsRemote reports whether pin p is allocated to peers other than self.
// A pin with no allocations is pinned everywhere.
func (p *Pin) IsRemote(self peer.ID) bool {
	if len(p.Allocations) == 0 {
		return false
	}
	for _, a := range p.Allocations {
		if a == self {
			return false
		}
	}
	return true
}

// IsPinEverywhere reports whether the pin goes on every peer.
func (p *Pin) IsPinEverywhere() bool {
	return p.ReplicationFactorMin == -1 && p.ReplicationFactorMax == -1
}

// ExpiredAt reports whether the pin has an expiry at or before t.
func (p *Pin) ExpiredAt(t time.Time) bool {
	return !p.ExpireAt.IsZero() && !t.Before(p.ExpireAt)
}

// Defined reports whether the pin has a CID.
func (p *Pin) Defined() bool { return p.Cid.Defined() }

// SortedMetadataKeys lists the metadata keys in order.
func (p *Pin) SortedMetadataKeys() []string {
	keys := make([]string, 0, len(p.Metadata))
	for k := range p.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// IPFSID is what kubo says of itself. While kubo cannot be reached only
// Error is set, and the ID is left out: an empty peer ID does not decode.
type IPFSID struct {
	ID        peer.ID     `json:"id,omitempty"`
	Addresses []Multiaddr `json:"addresses"`
	Error     string      `json:"error"`
}

// ID describes a cluster peer.
type ID struct {
	ID                    peer.ID     `json:"id"`
	Addresses             []Multiaddr `json:"addresses"`
	ClusterPeers          []peer.ID   `json:"cluster_peers"`
	ClusterPeersAddresses []Multiaddr `json:"cluster_peers_addresses"`
	Version               string      `json:"version"`
	Commit                string      `json:"commit"`
	RPCProtocolVersion    string      `json:"rpc_protocol_version"`
	Error                 string      `json:"error"`
	// IPFS is always encoded, also for a peer in error, as in the
	// reference (where omitempty on a struct has no effect).
	IPFS     IPFSID `json:"ipfs"`
	Peername string `json:"peername"`
	// PolicySHA256 is the sha256 of the loaded Lua policy ("" when none).
	PolicySHA256 string `json:"policy_sha256,omitempty"`
}

// VersionInfo is the body of GET /version.
type VersionInfo struct {
	Version string `json:"version"`
}

// Error is the body of an error reply.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// Error implements error.
func (e Error) Error() string { return e.Message }

// PinInfoShort is the per-peer part of a pin's status.
type PinInfoShort struct {
	PeerName      string        `json:"peername"`
	IPFS          peer.ID       `json:"ipfs_peer_id,omitempty"`
	IPFSAddresses []Multiaddr   `json:"ipfs_peer_addresses,omitempty"`
	Status        TrackerStatus `json:"status"`
	TS            time.Time     `json:"timestamp"`
	Error         string        `json:"error"`
	AttemptCount  int           `json:"attempt_count"`
	PriorityPin   bool          `json:"priority_pin"`
}

// PinInfo is the status of a pin on one peer.
type PinInfo struct {
	Cid         Cid               `json:"cid"`
	Name        string            `json:"name"`
	Peer        peer.ID           `json:"peer"`
	Allocations []peer.ID         `json:"allocations"`
	Origins     []Multiaddr       `json:"origins"`
	Created     time.Time         `json:"created"`
	Metadata    map[string]string `json:"metadata"`
	PinInfoShort
}

// GlobalPinInfo is the status of a pin on every peer that tracks it.
type GlobalPinInfo struct {
	Cid         Cid                     `json:"cid"`
	Name        string                  `json:"name"`
	Allocations []peer.ID               `json:"allocations"`
	Origins     []Multiaddr             `json:"origins"`
	Created     time.Time               `json:"created"`
	Metadata    map[string]string       `json:"metadata"`
	PeerMap     map[string]PinInfoShort `json:"peer_map"`
}

// Add merges one peer's PinInfo into the global view. names, when not
// nil, keeps the text of peer IDs across calls.
func (gpi *GlobalPinInfo) Add(pi PinInfo, names *TextCache) {
	if !gpi.Cid.Defined() || (gpi.Name == "" && pi.Name != "") {
		gpi.Cid = pi.Cid
		gpi.Name = pi.Name
		gpi.Allocations = pi.Allocations
		gpi.Origins = pi.Origins
		gpi.Created = pi.Created
		gpi.Metadata = pi.Metadata
	}
	if gpi.PeerMap == nil {
		gpi.PeerMap = make(map[string]PinInfoShort)
	}
	gpi.PeerMap[names.Peer(pi.Peer)] = pi.PinInfoShort
}

// SortedPeers lists the peer IDs of the peer map in order.
func (gpi *GlobalPinInfo) SortedPeers() []string {
	peers := make([]string, 0, len(gpi.PeerMap))
	for id := range gpi.PeerMap {
		peers = append(peers, id)
	}
	sort.Strings(peers)
	return peers
}

// Match reports whether any peer's status is in filter.
func (gpi *GlobalPinInfo) Match(filter TrackerStatus) bool {
	for _, p := range gpi.PeerMap {
		if p.Status.Match(filter) {
			return true
		}
	}
	return false
}

// Metric is one informer value a peer publishes.
type Metric struct {
	Name          string  `json:"name"`
	Peer          peer.ID `json:"peer"`
	Value         string  `json:"value"`
	Expire        int64   `json:"expire"`
	Valid         bool    `json:"valid"`
	Weight        int64   `json:"weight"`
	Partitionable bool    `json:"partitionable"`
	ReceivedAt    int64   `json:"received_at"`
}

// SetTTL sets the expiry d from now.
func (m *Metric) SetTTL(d time.Duration) { m.Expire = time.Now().Add(d).UnixNano() }

// Expired reports whether the metric is past its expiry.
func (m *Metric) Expired() bool { return time.Now().UnixNano() > m.Expire }

// Alert is raised when a peer's metric expires.
type Alert struct {
	Metric
	TriggeredAt time.Time `json:"triggered_at"`
}

// Bandwidth is the libp2p traffic of one protocol: bytes since the peer
// started and the current rates in bytes per second.
type Bandwidth struct {
	TotalIn  int64   `json:"total_in"`
	TotalOut int64   `json:"total_out"`
	RateIn   float64 `json:"rate_in"`
	RateOut  float64 `json:"rate_out"`
}

// BandwidthByProtocol is the traffic of a peer's libp2p host, keyed by
// protocol ID (GET /health/bandwidth).
type BandwidthByProtocol map[string]Bandwidth

// ConnectGraph is the connectivity of the cluster as one peer sees it:
// which cluster peers each peer is connected to, which kubo daemon each
// peer drives and which kubo daemons those are connected to.
type ConnectGraph struct {
	ClusterID         peer.ID              `json:"cluster_id"`
	IDtoPeername      map[string]string    `json:"id_to_peername"`
	IPFSLinks         map[string][]peer.ID `json:"ipfs_links"`
	ClusterLinks      map[string][]peer.ID `json:"cluster_links"`
	ClusterTrustLinks map[string]bool      `json:"cluster_trust_links"`
	ClustertoIPFS     map[string]peer.ID   `json:"cluster_to_ipfs"`
}

// IPFSRepoGC is one key kubo collected (or failed to).
type IPFSRepoGC struct {
	Key   Cid    `json:"key"`
	Error string `json:"error,omitempty"`
}

// RepoGC is the result of a GC on one peer.
type RepoGC struct {
	Peer     peer.ID      `json:"peer"`
	Peername string       `json:"peername"`
	Keys     []IPFSRepoGC `json:"keys"`
	Error    string       `json:"error,omitempty"`
}

// GlobalRepoGC is the result of a GC on every peer.
type GlobalRepoGC struct {
	PeerMap map[string]RepoGC `json:"peer_map"`
}

// IPFSRepoStat is kubo's repository usage.
type IPFSRepoStat struct {
	RepoSize   uint64 `json:"repo_size"`
	StorageMax uint64 `json:"storage_max"`
}

// AddedOutput is one line of an add reply.
type AddedOutput struct {
	Name        string    `json:"name"`
	Cid         Cid       `json:"cid"`
	Bytes       uint64    `json:"bytes,omitempty"`
	Size        uint64    `json:"size,omitempty"`
	Allocations []peer.ID `json:"allocations,omitempty"`
	// FailedDestinations (ours; the reference has no such field, and its
	// clients ignore it) is set on the add's last output, the root's:
	// the allocated peers whose kubo did not get every block, which
	// their tracker then fetches.
	FailedDestinations []AddFailure `json:"failed_destinations,omitempty"`
}

// AddFailure is a destination of an add that did not get the blocks.
type AddFailure struct {
	Peer  peer.ID `json:"peer"`
	Error string  `json:"error"`
}

// IPFSPinStatus is how kubo holds a CID.
type IPFSPinStatus string

// kubo pin types.
const (
	IPFSPinStatusUnpinned  IPFSPinStatus = ""
	IPFSPinStatusRecursive IPFSPinStatus = "recursive"
	IPFSPinStatusDirect    IPFSPinStatus = "direct"
	IPFSPinStatusIndirect  IPFSPinStatus = "indirect"
)

// IsPinned reports whether kubo holds the CID with a pin of its own.
func (s IPFSPinStatus) IsPinned() bool {
	return s == IPFSPinStatusRecursive || s == IPFSPinStatusDirect
}

// IPFSPinInfo is one line of kubo's streamed pin/ls.
type IPFSPinInfo struct {
	Cid  Cid           `json:"Cid"`
	Type IPFSPinStatus `json:"Type"`
}

// PolicyReload is one peer's answer to POST /policy/reload: the sha256 of
// the policy it runs afterwards, and why the reload failed if it did (the
// previous policy then stays active).
type PolicyReload struct {
	Peer         peer.ID `json:"peer"`
	Peername     string  `json:"peername"`
	PolicySHA256 string  `json:"policy_sha256"`
	Error        string  `json:"error,omitempty"`
}
