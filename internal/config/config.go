package config

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// File names inside the config folder.
const (
	ServiceFile  = "service.json"
	IdentityFile = "identity.json"
	DefaultDir   = ".ipfs-cluster"
)

// Cluster is the "cluster" section.
type Cluster struct {
	Peername               string            `json:"peername"`
	Secret                 string            `json:"secret"`
	ListenMultiaddress     StringList        `json:"listen_multiaddress"`
	AnnounceMultiaddress   []string          `json:"announce_multiaddress"`
	NoAnnounceMultiaddress []string          `json:"no_announce_multiaddress"`
	ConnectionManager      ConnectionManager `json:"connection_manager"`
	DialPeerTimeout        Duration          `json:"dial_peer_timeout"`
	StateSyncInterval      Duration          `json:"state_sync_interval"`
	PinRecoverInterval     Duration          `json:"pin_recover_interval"`
	ReplicationFactorMin   int               `json:"replication_factor_min"`
	ReplicationFactorMax   int               `json:"replication_factor_max"`
	MonitorPingInterval    Duration          `json:"monitor_ping_interval"`
	PinOnlyOnTrustedPeers  bool              `json:"pin_only_on_trusted_peers"`
	// PinOnlyOnUntrustedPeers never allocates to trusted peers: they
	// keep the pinset, the others store the content.
	PinOnlyOnUntrustedPeers bool `json:"pin_only_on_untrusted_peers"`
	DisableRepinning        bool `json:"disable_repinning"`
	// FollowerMode makes a peer that stores what the trusted peers
	// decide and cannot change the pinset (ipfs-cluster-follow sets it).
	FollowerMode    bool            `json:"follower_mode,omitempty"`
	PeerstoreFile   string          `json:"peerstore_file"`
	PeerAddresses   []string        `json:"peer_addresses"`
	ResourceManager ResourceManager `json:"resource_manager"`
	PubSub          PubSub          `json:"pubsub"`
	// EnableRelayHop relays connections between other peers.
	EnableRelayHop bool `json:"enable_relay_hop"`
	// The features below talk to more than the configured peers (the
	// gateway, peers' probes, relays, the DNS resolver). The reference
	// always runs the NAT ones; here each is a switch, and only DNS is on
	// by default, so that a loopback cluster sends nothing beyond
	// loopback.
	EnableNATPortMap   bool `json:"enable_nat_port_map"`
	EnableAutoNAT      bool `json:"enable_autonat"`
	EnableNATService   bool `json:"enable_nat_service"`
	EnableRelayClient  bool `json:"enable_relay_client"`
	EnableHolePunching bool `json:"enable_hole_punching"`
	ResolveDNS         bool `json:"resolve_dns"`
	// PolicyFile names the Lua policy, relative to the config folder;
	// empty means none. PolicyTimeout is the time budget of one hook call.
	PolicyFile    string   `json:"policy_file"`
	PolicyTimeout Duration `json:"policy_timeout"`
}

// ResourceManager is "cluster.resource_manager": libp2p's limits on
// connections, streams and memory. Zero limits scale with the machine.
type ResourceManager struct {
	Enabled              bool  `json:"enabled"`
	MemoryLimitBytes     int64 `json:"memory_limit_bytes"`
	FileDescriptorsLimit int   `json:"file_descriptors_limit"`
}

// PubSub is "cluster.pubsub", the gossip that carries metrics and CRDT
// head announcements. DFactor multiplies GossipSub's mesh degrees.
type PubSub struct {
	SeenMessagesTTL   Duration `json:"seen_messages_ttl"`
	HeartbeatInterval Duration `json:"heartbeat_interval"`
	DFactor           int      `json:"d_factor"`
	HistoryGossip     int      `json:"history_gossip"`
	HistoryLength     int      `json:"history_length"`
	FloodPublish      bool     `json:"flood_publish"`
}

// ConnectionManager is "cluster.connection_manager".
type ConnectionManager struct {
	HighWater   int      `json:"high_water"`
	LowWater    int      `json:"low_water"`
	GracePeriod Duration `json:"grace_period"`
}

// CRDT is the "consensus.crdt" section. DAGSyncTimeout is ours (the
// reference hard-codes 2 minutes), and so is FsyncAcks.
type CRDT struct {
	ClusterName         string       `json:"cluster_name"`
	TrustedPeers        []string     `json:"trusted_peers"`
	Batching            CRDTBatching `json:"batching"`
	RepairInterval      Duration     `json:"repair_interval"`
	RebroadcastInterval Duration     `json:"rebroadcast_interval"`
	DatastoreNamespace  string       `json:"datastore_namespace"`
	DAGSyncTimeout      Duration     `json:"dag_sync_timeout"`
	FsyncAcks           bool         `json:"fsync_acks"`
}

// CRDTBatching is "consensus.crdt.batching": on when both size and age are
// positive.
type CRDTBatching struct {
	MaxBatchSize int      `json:"max_batch_size"`
	MaxBatchAge  Duration `json:"max_batch_age"`
	MaxQueueSize int      `json:"max_queue_size"`
}

// PubsubMon is the "monitor.pubsubmon" section.
type PubsubMon struct {
	CheckInterval Duration `json:"check_interval"`
}

// Metrics is the "observations.metrics" section: with EnableStats, the
// peer serves Prometheus metrics at /metrics and Go profiles under
// /debug/pprof/ on PrometheusEndpoint.
type Metrics struct {
	EnableStats        bool     `json:"enable_stats"`
	PrometheusEndpoint string   `json:"prometheus_endpoint"`
	ReportingInterval  Duration `json:"reporting_interval"`
}

// RestAPI is the "api.restapi" section.
type RestAPI struct {
	HTTPListenMultiaddress StringList          `json:"http_listen_multiaddress"`
	ReadTimeout            Duration            `json:"read_timeout"`
	ReadHeaderTimeout      Duration            `json:"read_header_timeout"`
	WriteTimeout           Duration            `json:"write_timeout"`
	IdleTimeout            Duration            `json:"idle_timeout"`
	MaxHeaderBytes         int                 `json:"max_header_bytes"`
	HTTPLogFile            string              `json:"http_log_file"`
	Headers                map[string][]string `json:"headers"`
	// BasicAuthCredentials maps users to passwords; null turns
	// authentication off.
	BasicAuthCredentials map[string]string `json:"basic_auth_credentials"`
	// SSLCertFile and SSLKeyFile, both set, serve HTTPS; relative paths
	// are taken from the configuration folder.
	SSLCertFile string `json:"ssl_cert_file"`
	SSLKeyFile  string `json:"ssl_key_file"`
	// The CORS policy for browsers, with rs/cors's semantics: empty
	// allowed headers means its defaults, a max age of 0 sends none.
	CORSAllowedOrigins   []string `json:"cors_allowed_origins"`
	CORSAllowedMethods   []string `json:"cors_allowed_methods"`
	CORSAllowedHeaders   []string `json:"cors_allowed_headers"`
	CORSExposedHeaders   []string `json:"cors_exposed_headers"`
	CORSAllowCredentials bool     `json:"cors_allow_credentials"`
	CORSMaxAge           Duration `json:"cors_max_age"`
	// AddIdleTimeout (ours) fails an add whose client sends nothing for
	// that long, freeing what the add holds.
	AddIdleTimeout Duration `json:"add_idle_timeout"`
}

// IPFSHTTP is the "ipfs_connector.ipfshttp" section.
type IPFSHTTP struct {
	NodeMultiaddress   string   `json:"node_multiaddress"`
	ConnectSwarmsDelay Duration `json:"connect_swarms_delay"`
	IPFSRequestTimeout Duration `json:"ipfs_request_timeout"`
	PinTimeout         Duration `json:"pin_timeout"`
	UnpinTimeout       Duration `json:"unpin_timeout"`
	RepoGCTimeout      Duration `json:"repogc_timeout"`
	UnpinDisable       bool     `json:"unpin_disable"`
	// MaxConcurrentRequests bounds the requests in flight toward kubo.
	MaxConcurrentRequests int `json:"max_concurrent_requests"`
}

// Stateless is the "pin_tracker.stateless" section.
type Stateless struct {
	MaxPinQueueSize       int      `json:"max_pin_queue_size"`
	ConcurrentPins        int      `json:"concurrent_pins"`
	PriorityPinMaxAge     Duration `json:"priority_pin_max_age"`
	PriorityPinMaxRetries int      `json:"priority_pin_max_retries"`
	// RetryMinDelay and RetryMaxDelay bound the exponential backoff
	// before a failed pin is retried on its own.
	RetryMinDelay Duration `json:"retry_min_delay"`
	RetryMaxDelay Duration `json:"retry_max_delay"`
}

// Disk is the "informer.disk" section.
type Disk struct {
	MetricTTL  Duration `json:"metric_ttl"`
	MetricType string   `json:"metric_type"`
}

// Tags is the "informer.tags" section.
type Tags struct {
	MetricTTL Duration          `json:"metric_ttl"`
	Tags      map[string]string `json:"tags"`
}

// PinQueue is the "informer.pinqueue" section.
type PinQueue struct {
	MetricTTL        Duration `json:"metric_ttl"`
	WeightBucketSize int      `json:"weight_bucket_size"`
}

// NumPin is the "informer.numpin" section.
type NumPin struct {
	MetricTTL Duration `json:"metric_ttl"`
}

// Informers groups the "informer" sections.
type Informers struct {
	Disk     Disk     `json:"disk"`
	Tags     Tags     `json:"tags"`
	PinQueue PinQueue `json:"pinqueue"`
	NumPin   NumPin   `json:"numpin"`
}

// Balanced is the "allocator.balanced" section.
type Balanced struct {
	AllocateBy []string `json:"allocate_by"`
	// MinFreeSpace is the free-space floor in bytes: a peer with less
	// never receives a new allocation (0 disables it).
	MinFreeSpace uint64 `json:"min_free_space"`
}

// APIs groups the "api" sections. A nil section is disabled, as in the
// reference, where an API runs only when its section is present.
type APIs struct {
	RestAPI *RestAPI `json:"restapi,omitempty"`
}

// Config is the whole of service.json.
type Config struct {
	Cluster   Cluster `json:"cluster"`
	Consensus struct {
		CRDT CRDT `json:"crdt"`
	} `json:"consensus"`
	API           APIs `json:"api"`
	IPFSConnector struct {
		IPFSHTTP IPFSHTTP `json:"ipfshttp"`
	} `json:"ipfs_connector"`
	PinTracker struct {
		Stateless Stateless `json:"stateless"`
	} `json:"pin_tracker"`
	Monitor struct {
		PubsubMon PubsubMon `json:"pubsubmon"`
	} `json:"monitor"`
	Allocator struct {
		Balanced Balanced `json:"balanced"`
	} `json:"allocator"`
	Informer     Informers `json:"informer"`
	Observations struct {
		Metrics Metrics `json:"metrics"`
	} `json:"observations"`

	// Warnings lists what loading ignored (unknown keys and sections).
	Warnings []string `json:"-"`
	// Source is the URL the configuration was fetched from, when
	// service.json holds only {"source": url}.
	Source string `json:"-"`
}

// StringList is a list of strings that JSON may also give as one string.
type StringList []string

// UnmarshalJSON accepts "a" or ["a", "b"].
func (l *StringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = StringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("expected a string or a list of strings")
	}
	*l = many
	return nil
}

// Default returns the configuration a fresh init writes.
func Default() *Config {
	host, _ := os.Hostname()
	c := &Config{}
	c.Cluster = Cluster{
		Peername:               host,
		ListenMultiaddress:     StringList{"/ip4/0.0.0.0/tcp/9096"},
		AnnounceMultiaddress:   []string{},
		NoAnnounceMultiaddress: []string{},
		ConnectionManager:      ConnectionManager{HighWater: 400, LowWater: 100, GracePeriod: Duration(2 * time.Minute)},
		DialPeerTimeout:        Duration(3 * time.Second),
		StateSyncInterval:      Duration(5 * time.Minute),
		PinRecoverInterval:     Duration(12 * time.Minute),
		ReplicationFactorMin:   -1,
		ReplicationFactorMax:   -1,
		MonitorPingInterval:    Duration(15 * time.Second),
		DisableRepinning:       true,
		PeerAddresses:          []string{},
		ResourceManager:        ResourceManager{Enabled: true},
		// GossipSub's own mesh, history and seen-message cache, and
		// flood publishing: a new head or metric reaches every peer at
		// once instead of waiting for the mesh, which is what a cluster
		// of a few to a few dozen peers wants. The reference keeps seen
		// messages for 30 minutes; at a thousand pins a second, each
		// announcing a head, that cache would hold millions of entries.
		PubSub: PubSub{
			SeenMessagesTTL:   Duration(2 * time.Minute),
			HeartbeatInterval: Duration(time.Second),
			DFactor:           1,
			HistoryGossip:     3,
			HistoryLength:     5,
			FloodPublish:      true,
		},
		ResolveDNS:    true,
		PolicyTimeout: Duration(50 * time.Millisecond),
	}
	c.Observations.Metrics = Metrics{
		PrometheusEndpoint: "/ip4/127.0.0.1/tcp/8888",
		ReportingInterval:  Duration(30 * time.Second),
	}
	c.Consensus.CRDT = CRDT{
		ClusterName:         "ipfs-cluster",
		TrustedPeers:        []string{"*"},
		Batching:            CRDTBatching{MaxQueueSize: 50000},
		RepairInterval:      Duration(time.Hour),
		RebroadcastInterval: Duration(time.Minute),
		DatastoreNamespace:  "/c",
		DAGSyncTimeout:      Duration(30 * time.Second),
	}
	c.Monitor.PubsubMon = PubsubMon{CheckInterval: Duration(15 * time.Second)}
	c.API.RestAPI = &RestAPI{
		HTTPListenMultiaddress: StringList{"/ip4/127.0.0.1/tcp/9094"},
		ReadHeaderTimeout:      Duration(5 * time.Second),
		IdleTimeout:            Duration(120 * time.Second),
		MaxHeaderBytes:         4096,
		Headers:                map[string][]string{},
		CORSAllowedOrigins:     []string{"*"},
		CORSAllowedMethods:     []string{"GET"},
		CORSAllowedHeaders:     []string{},
		CORSExposedHeaders:     []string{"Content-Type", "X-Stream-Output", "X-Chunked-Output", "X-Content-Length"},
		CORSAllowCredentials:   true,
		AddIdleTimeout:         Duration(time.Minute),
	}
	c.IPFSConnector.IPFSHTTP = IPFSHTTP{
		NodeMultiaddress:      "/ip4/127.0.0.1/tcp/5001",
		ConnectSwarmsDelay:    Duration(30 * time.Second),
		IPFSRequestTimeout:    Duration(5 * time.Minute),
		PinTimeout:            Duration(2 * time.Minute),
		UnpinTimeout:          Duration(3 * time.Hour),
		RepoGCTimeout:         Duration(24 * time.Hour),
		MaxConcurrentRequests: 32,
	}
	c.PinTracker.Stateless = Stateless{
		MaxPinQueueSize:       1000000,
		ConcurrentPins:        10,
		PriorityPinMaxAge:     Duration(24 * time.Hour),
		PriorityPinMaxRetries: 5,
		RetryMinDelay:         Duration(30 * time.Second),
		RetryMaxDelay:         Duration(12 * time.Minute),
	}
	c.Allocator.Balanced = Balanced{
		AllocateBy:   []string{"tag:group", "freespace"},
		MinFreeSpace: 1 << 30,
	}
	c.Informer = Informers{
		Disk:     Disk{MetricTTL: Duration(30 * time.Second), MetricType: "freespace"},
		Tags:     Tags{MetricTTL: Duration(30 * time.Second), Tags: map[string]string{"group": "default"}},
		PinQueue: PinQueue{MetricTTL: Duration(30 * time.Second), WeightBucketSize: 100000},
		NumPin:   NumPin{MetricTTL: Duration(10 * time.Second)},
	}
	return c
}

// NewSecret returns 32 random bytes, hex-encoded.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// section binds a JSON path to the struct it fills and its env prefix.
type section struct {
	path      string
	envPrefix string
	ptr       any
}

func (c *Config) sections() []section {
	s := []section{
		{"cluster", "CLUSTER_", &c.Cluster},
		{"cluster.connection_manager", "CLUSTER_CONNECTIONMANAGER_", &c.Cluster.ConnectionManager},
		{"consensus.crdt", "CLUSTER_CRDT_", &c.Consensus.CRDT},
		{"consensus.crdt.batching", "CLUSTER_CRDT_BATCHING_", &c.Consensus.CRDT.Batching},
		{"monitor.pubsubmon", "CLUSTER_PUBSUBMON_", &c.Monitor.PubsubMon},
		{"ipfs_connector.ipfshttp", "CLUSTER_IPFSHTTP_", &c.IPFSConnector.IPFSHTTP},
		{"pin_tracker.stateless", "CLUSTER_STATELESS_", &c.PinTracker.Stateless},
		{"allocator.balanced", "CLUSTER_BALANCED_", &c.Allocator.Balanced},
		{"informer.disk", "CLUSTER_DISK_", &c.Informer.Disk},
		{"informer.tags", "CLUSTER_TAGS_", &c.Informer.Tags},
		{"informer.pinqueue", "CLUSTER_PINQUEUE_", &c.Informer.PinQueue},
		{"informer.numpin", "CLUSTER_NUMPIN_", &c.Informer.NumPin},
		{"observations.metrics", "CLUSTER_METRICS_", &c.Observations.Metrics},
	}
	if c.API.RestAPI != nil {
		s = append(s, section{"api.restapi", "CLUSTER_RESTAPI_", c.API.RestAPI})
	}
	return s
}

// Parse decodes service.json bytes over the defaults, applies environment
// overrides and validates. Sections missing from the file keep their
// defaults, except the APIs, which are off unless their section is there.
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	c := Default()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalid, ServiceFile, describeJSONError(data, err))
	}
	// A file that is "null", or that lost its cluster section, would
	// otherwise start a peer with no secret: open to anyone.
	if top == nil {
		return nil, fmt.Errorf("%w: %s: expected a JSON object with the configuration's sections", ErrInvalid, ServiceFile)
	}
	if src, ok := top["source"]; ok {
		return nil, fmt.Errorf("%w: %s: \"source\": %s: a configuration fetched from a source cannot point to another source", ErrInvalid, ServiceFile, clip(src))
	}
	if _, ok := top["cluster"]; !ok {
		return nil, fmt.Errorf("%w: %s: no cluster section (the peer's name, secret and addresses)", ErrInvalid, ServiceFile)
	}
	if _, ok := top["api"]; !ok || !hasKey(top["api"], "restapi") {
		c.API.RestAPI = nil
		c.Warnings = append(c.Warnings, "no api.restapi section: the REST API is off")
	}
	known := map[string]bool{}
	for _, s := range c.sections() {
		known[s.path] = true
		raw, ok := lookup(top, s.path)
		if !ok {
			continue
		}
		w, err := decodeSection(s.path, raw, s.ptr)
		c.Warnings = append(c.Warnings, w...)
		if err != nil {
			return nil, err
		}
	}
	c.Warnings = append(c.Warnings, unknownSections(top, known)...)
	if err := c.ApplyEnv(getenv); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// ApplyEnv overrides settings from the environment, as the reference's
// envconfig does: CLUSTER_<SECTION>_<KEY> (CLUSTER_<KEY> for the cluster
// section), KEY being the JSON key upper-cased without underscores.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	for _, s := range c.sections() {
		if err := applyEnv(s.path, s.envPrefix, s.ptr, getenv); err != nil {
			return err
		}
	}
	return nil
}

// lookup follows a dotted path through nested objects.
func lookup(top map[string]json.RawMessage, path string) (json.RawMessage, bool) {
	parts := strings.Split(path, ".")
	raw, ok := top[parts[0]]
	for _, p := range parts[1:] {
		if !ok {
			return nil, false
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil, false
		}
		raw, ok = obj[p]
	}
	return raw, ok
}

func hasKey(raw json.RawMessage, key string) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return false
	}
	_, ok := obj[key]
	return ok
}

// referenceGroups are the reference's top-level sections that group
// component sections (api.restapi, datastore.pebble, ...).
var referenceGroups = map[string]bool{
	"api": true, "ipfs_connector": true, "pin_tracker": true, "monitor": true, "allocator": true,
	"informer": true, "observations": true, "datastore": true, "consensus": true,
}

// unknownSections warns about top-level sections and subsections this
// version does not use, so an operator sees what has no effect.
func unknownSections(top map[string]json.RawMessage, known map[string]bool) []string {
	var out []string
	for _, name := range sortedKeys(top) {
		if known[name] {
			continue
		}
		// Only the reference's groups of sections hold subsections
		// worth naming; anything else is unknown as a whole.
		var sub map[string]json.RawMessage
		if !referenceGroups[name] || json.Unmarshal(top[name], &sub) != nil || len(sub) == 0 {
			out = append(out, fmt.Sprintf("section %s is not used by this version; ignored", name))
			continue
		}
		for _, s := range sortedKeys(sub) {
			if !known[name+"."+s] {
				out = append(out, fmt.Sprintf("section %s.%s is not used by this version; ignored", name, s))
			}
		}
	}
	return out
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// describeJSONError turns a syntax error offset into a line and column.
func describeJSONError(data []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(data[:se.Offset], []byte("\n"))
		col := int(se.Offset) - bytes.LastIndexByte(data[:se.Offset], '\n') - 1
		return fmt.Sprintf("malformed JSON at line %d, column %d: %v", line, col, err)
	}
	return fmt.Sprintf("malformed JSON: %v", err)
}

// Validate checks values that decoding alone cannot, naming the key.
func (c *Config) Validate() error {
	bad := func(key string, val any, why string) error {
		return fmt.Errorf("%w: %s: invalid value %v: %s", ErrInvalid, key, val, why)
	}
	cl := c.Cluster
	if cl.Secret != "" {
		if b, err := hex.DecodeString(cl.Secret); err != nil || len(b) != 32 {
			return bad("cluster.secret", "(hidden)", "want 64 hexadecimal characters (32 bytes)")
		}
	}
	if err := ValidateReplication(cl.ReplicationFactorMin, cl.ReplicationFactorMax); err != nil {
		return fmt.Errorf("%w: cluster.replication_factor_min/max: %v", ErrInvalid, err)
	}
	for key, d := range map[string]Duration{
		"cluster.state_sync_interval":         cl.StateSyncInterval,
		"cluster.pin_recover_interval":        cl.PinRecoverInterval,
		"cluster.monitor_ping_interval":       cl.MonitorPingInterval,
		"cluster.dial_peer_timeout":           cl.DialPeerTimeout,
		"monitor.pubsubmon.check_interval":    c.Monitor.PubsubMon.CheckInterval,
		"consensus.crdt.rebroadcast_interval": c.Consensus.CRDT.RebroadcastInterval,
		"consensus.crdt.dag_sync_timeout":     c.Consensus.CRDT.DAGSyncTimeout,
		"cluster.policy_timeout":              cl.PolicyTimeout,
		"cluster.pubsub.seen_messages_ttl":    cl.PubSub.SeenMessagesTTL,
		"cluster.pubsub.heartbeat_interval":   cl.PubSub.HeartbeatInterval,
		"informer.disk.metric_ttl":            c.Informer.Disk.MetricTTL,
		"informer.tags.metric_ttl":            c.Informer.Tags.MetricTTL,
		"informer.pinqueue.metric_ttl":        c.Informer.PinQueue.MetricTTL,
		"informer.numpin.metric_ttl":          c.Informer.NumPin.MetricTTL,
	} {
		if d <= 0 {
			return bad(key, d.D(), "must be positive")
		}
	}
	if len(cl.ListenMultiaddress) == 0 {
		return bad("cluster.listen_multiaddress", "[]", "at least one address is needed")
	}
	for key, addrs := range map[string][]string{
		"cluster.listen_multiaddress":      cl.ListenMultiaddress,
		"cluster.announce_multiaddress":    cl.AnnounceMultiaddress,
		"cluster.no_announce_multiaddress": cl.NoAnnounceMultiaddress,
		"cluster.peer_addresses":           cl.PeerAddresses,
	} {
		for _, a := range addrs {
			if _, err := ma.NewMultiaddr(a); err != nil {
				return bad(key, fmt.Sprintf("%q", a), err.Error())
			}
		}
	}
	if cl.PinOnlyOnTrustedPeers && cl.PinOnlyOnUntrustedPeers {
		return bad("cluster.pin_only_on_untrusted_peers", true, "pin_only_on_trusted_peers is also true: no peer could hold a pin")
	}
	if ps := cl.PubSub; ps.DFactor < 1 {
		return bad("cluster.pubsub.d_factor", ps.DFactor, "must be at least 1")
	} else if ps.HistoryGossip < 1 || ps.HistoryLength < ps.HistoryGossip {
		return bad("cluster.pubsub.history_length", ps.HistoryLength, fmt.Sprintf("must be at least history_gossip (%d), which must be at least 1", ps.HistoryGossip))
	}
	if rm := cl.ResourceManager; rm.MemoryLimitBytes < 0 || rm.FileDescriptorsLimit < 0 {
		return bad("cluster.resource_manager", fmt.Sprintf("%+v", rm), "limits cannot be negative (0 scales with the machine)")
	}
	if cm := cl.ConnectionManager; cm.LowWater < 0 || cm.HighWater < cm.LowWater {
		return bad("cluster.connection_manager.high_water", cm.HighWater, "must not be below low_water")
	}
	if c.Consensus.CRDT.ClusterName == "" {
		return bad("consensus.crdt.cluster_name", `""`, "must not be empty")
	}
	ih := c.IPFSConnector.IPFSHTTP
	if _, err := ma.NewMultiaddr(ih.NodeMultiaddress); err != nil {
		return bad("ipfs_connector.ipfshttp.node_multiaddress", fmt.Sprintf("%q", ih.NodeMultiaddress), err.Error())
	}
	if ih.MaxConcurrentRequests < 1 {
		return bad("ipfs_connector.ipfshttp.max_concurrent_requests", ih.MaxConcurrentRequests, "must be at least 1")
	}
	if ih.PinTimeout <= 0 {
		return bad("ipfs_connector.ipfshttp.pin_timeout", ih.PinTimeout.D(), "must be positive")
	}
	st := c.PinTracker.Stateless
	if st.ConcurrentPins < 1 {
		return bad("pin_tracker.stateless.concurrent_pins", st.ConcurrentPins, "must be at least 1")
	}
	if st.MaxPinQueueSize < 1 {
		return bad("pin_tracker.stateless.max_pin_queue_size", st.MaxPinQueueSize, "must be at least 1")
	}
	if st.RetryMinDelay <= 0 || st.RetryMaxDelay < st.RetryMinDelay {
		return bad("pin_tracker.stateless.retry_min_delay", st.RetryMinDelay.D(), "must be positive and not above retry_max_delay")
	}
	if len(c.Allocator.Balanced.AllocateBy) == 0 {
		return bad("allocator.balanced.allocate_by", "[]", "name at least one metric, e.g. [\"tag:group\", \"freespace\"]")
	}
	if mt := c.Informer.Disk.MetricType; mt != "freespace" && mt != "reposize" {
		return bad("informer.disk.metric_type", fmt.Sprintf("%q", mt), "want freespace or reposize")
	}
	if m := c.Observations.Metrics; m.EnableStats {
		if _, err := ma.NewMultiaddr(m.PrometheusEndpoint); err != nil {
			return bad("observations.metrics.prometheus_endpoint", fmt.Sprintf("%q", m.PrometheusEndpoint), err.Error())
		}
	}
	if r := c.API.RestAPI; r != nil {
		if len(r.HTTPListenMultiaddress) == 0 {
			return bad("api.restapi.http_listen_multiaddress", "[]", "at least one address is needed")
		}
		for _, a := range r.HTTPListenMultiaddress {
			if _, err := ma.NewMultiaddr(a); err != nil {
				return bad("api.restapi.http_listen_multiaddress", fmt.Sprintf("%q", a), err.Error())
			}
		}
		if r.MaxHeaderBytes < 4096 {
			return bad("api.restapi.max_header_bytes", r.MaxHeaderBytes, "must be at least 4096")
		}
		if r.BasicAuthCredentials != nil && len(r.BasicAuthCredentials) == 0 {
			return bad("api.restapi.basic_auth_credentials", "{}", "empty: give at least one user, or null for no authentication")
		}
		// An empty password is accepted, as the reference accepts it
		// (its own test configurations have one), but never matches:
		// the REST API warns that the user cannot log in.
		if _, ok := r.BasicAuthCredentials[""]; ok {
			return bad("api.restapi.basic_auth_credentials", `""`, "a user name cannot be empty")
		}
		if r.AddIdleTimeout <= 0 {
			return bad("api.restapi.add_idle_timeout", r.AddIdleTimeout.D(), "must be positive")
		}
		if r.CORSMaxAge < 0 {
			return bad("api.restapi.cors_max_age", r.CORSMaxAge.D(), "cannot be negative")
		}
		if (r.SSLCertFile == "") != (r.SSLKeyFile == "") {
			return bad("api.restapi.ssl_cert_file", fmt.Sprintf("%q", r.SSLCertFile), "ssl_cert_file and ssl_key_file must be set together")
		}
	}
	return nil
}

// ValidateReplication checks a min/max replication pair as the reference
// does: both non-zero, min ≤ max, none below -1, -1 on both or neither.
func ValidateReplication(rmin, rmax int) error {
	switch {
	case rmin == 0 || rmax == 0:
		return fmt.Errorf("replication factors must be non-zero (got %d/%d)", rmin, rmax)
	case rmin < -1 || rmax < -1:
		return fmt.Errorf("replication factors cannot be below -1 (got %d/%d)", rmin, rmax)
	case (rmin == -1) != (rmax == -1):
		return fmt.Errorf("replication factors must both be -1 or neither (got %d/%d)", rmin, rmax)
	case rmin > rmax:
		return fmt.Errorf("replication_factor_min (%d) is above replication_factor_max (%d)", rmin, rmax)
	}
	return nil
}

// Marshal renders service.json.
func (c *Config) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Load reads dir/service.json. A file that holds only {"source": url}
// (what ipfs-cluster-follow init writes) loads the configuration served at
// url, fetched at every start, as the reference does: the cluster's
// operators keep one template for all their followers.
func Load(dir string, getenv func(string) string) (*Config, error) {
	path := filepath.Join(dir, ServiceFile)
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no %s in %s: run 'ipfs-cluster init' first", ServiceFile, dir)
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	url, ok := SourceOf(data)
	if !ok {
		return Parse(data, getenv)
	}
	if data, err = fetchSource(url); err != nil {
		return nil, err
	}
	c, err := Parse(data, getenv)
	if err != nil {
		return nil, fmt.Errorf("configuration from %s: %w", url, err)
	}
	c.Source = url
	return c, nil
}

// Save writes dir/service.json (mode 0600: it holds the secret).
func (c *Config) Save(dir string) error {
	b, err := c.Marshal()
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ServiceFile), b, 0o600)
}

// writeFileAtomic writes through a temporary file and a rename so that a
// crash never leaves a half-written config.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
