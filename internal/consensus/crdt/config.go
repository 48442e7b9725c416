package crdt

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
)

// TrustAll in trusted_peers trusts every peer.
const TrustAll = "*"

// Config is the "consensus.crdt" section of service.json. The keys are the
// reference's; DAGSyncTimeout is ours (the reference hard-codes 2 minutes).
type Config struct {
	// ClusterName names the cluster; the pubsub topic is derived from it.
	ClusterName string
	// TrustedPeers lists the peer IDs whose changes are merged, or "*".
	TrustedPeers []string
	Batching     BatchingConfig
	// RepairInterval bounds the wait between repairs of a dirty store
	// (0 disables repairs).
	RepairInterval time.Duration
	// RebroadcastInterval is how often the heads are announced again: the
	// delay before a peer that missed an announcement catches up.
	RebroadcastInterval time.Duration
	// DatastoreNamespace is the key prefix of everything stored here.
	DatastoreNamespace string
	// DAGSyncTimeout bounds the fetch of one level of a DAG branch.
	DAGSyncTimeout time.Duration
}

// BatchingConfig is "consensus.crdt.batching". Batching is on only when
// both MaxBatchSize and MaxBatchAge are positive.
type BatchingConfig struct {
	// MaxBatchSize commits a batch once it holds this many operations.
	MaxBatchSize int
	// MaxBatchAge commits a batch this long after its first operation.
	MaxBatchAge time.Duration
	// MaxQueueSize bounds the operations waiting for a commit.
	MaxQueueSize int
}

// DefaultConfig returns the reference's defaults (and ours for the keys the
// reference lacks).
func DefaultConfig() Config {
	return Config{
		ClusterName:         "ipfs-cluster",
		TrustedPeers:        []string{TrustAll},
		Batching:            BatchingConfig{MaxQueueSize: 50000},
		RepairInterval:      time.Hour,
		RebroadcastInterval: time.Minute,
		DatastoreNamespace:  "/c",
		DAGSyncTimeout:      30 * time.Second,
	}
}

// batching reports whether operations are batched.
func (c *Config) batching() bool {
	return c.Batching.MaxBatchSize > 0 && c.Batching.MaxBatchAge > 0
}

// Validate checks every value.
func (c *Config) Validate() error {
	var errs []error
	if c.ClusterName == "" {
		errs = append(errs, errors.New("cluster_name is empty"))
	}
	if _, err := c.trust(); err != nil {
		errs = append(errs, err)
	}
	if c.Batching.MaxBatchSize < 0 || c.Batching.MaxBatchAge < 0 {
		errs = append(errs, errors.New("batching: max_batch_size and max_batch_age must not be negative"))
	}
	if c.Batching.MaxQueueSize <= 0 {
		errs = append(errs, errors.New("batching: max_queue_size must be positive"))
	}
	if c.RepairInterval < 0 {
		errs = append(errs, errors.New("repair_interval must not be negative"))
	}
	if c.RebroadcastInterval <= 0 {
		errs = append(errs, errors.New("rebroadcast_interval must be positive"))
	}
	if c.DAGSyncTimeout <= 0 {
		errs = append(errs, errors.New("dag_sync_timeout must be positive"))
	}
	if ns := c.DatastoreNamespace; len(ns) < 2 || ns[0] != '/' || strings.HasSuffix(ns, "/") {
		errs = append(errs, fmt.Errorf("datastore_namespace %q: want a key such as /c", ns))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("consensus.crdt: %w", err)
	}
	return nil
}

// trust parses TrustedPeers.
func (c *Config) trust() (*trustSet, error) {
	t := newTrustSet()
	for _, s := range c.TrustedPeers {
		if s == TrustAll {
			t.all = true
			continue
		}
		id, err := peer.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("trusted_peers: %q: %w", s, err)
		}
		t.peers[id] = struct{}{}
	}
	return t, nil
}

// Topic is the pubsub topic of the cluster: the base58 MD5 multihash of the
// cluster name, as in the reference, so that peers of both can share a
// cluster name without sharing a topic name with other applications.
func (c *Config) Topic() (string, error) {
	mh, err := multihash.Sum([]byte(c.ClusterName), multihash.MD5, -1)
	if err != nil {
		return "", fmt.Errorf("topic of %q: %w", c.ClusterName, err)
	}
	return mh.B58String(), nil
}

// jsonConfig is the service.json form: durations are Go duration strings.
type jsonConfig struct {
	ClusterName         string       `json:"cluster_name"`
	TrustedPeers        []string     `json:"trusted_peers"`
	Batching            jsonBatching `json:"batching"`
	RepairInterval      string       `json:"repair_interval"`
	RebroadcastInterval string       `json:"rebroadcast_interval,omitempty"`
	DatastoreNamespace  string       `json:"datastore_namespace,omitempty"`
	DAGSyncTimeout      string       `json:"dag_sync_timeout,omitempty"`
}

type jsonBatching struct {
	MaxBatchSize int    `json:"max_batch_size"`
	MaxBatchAge  string `json:"max_batch_age"`
	MaxQueueSize int    `json:"max_queue_size,omitempty"`
}

// MarshalJSON writes the reference's layout; like the reference it leaves
// out the keys that hold their default.
func (c Config) MarshalJSON() ([]byte, error) {
	d := DefaultConfig()
	j := jsonConfig{
		ClusterName:    c.ClusterName,
		TrustedPeers:   c.TrustedPeers,
		RepairInterval: c.RepairInterval.String(),
		Batching: jsonBatching{
			MaxBatchSize: c.Batching.MaxBatchSize,
			MaxBatchAge:  c.Batching.MaxBatchAge.String(),
		},
	}
	if c.Batching.MaxQueueSize != d.Batching.MaxQueueSize {
		j.Batching.MaxQueueSize = c.Batching.MaxQueueSize
	}
	if c.RebroadcastInterval != d.RebroadcastInterval {
		j.RebroadcastInterval = c.RebroadcastInterval.String()
	}
	if c.DatastoreNamespace != d.DatastoreNamespace {
		j.DatastoreNamespace = c.DatastoreNamespace
	}
	if c.DAGSyncTimeout != d.DAGSyncTimeout {
		j.DAGSyncTimeout = c.DAGSyncTimeout.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the service.json form; absent keys keep their
// defaults.
func (c *Config) UnmarshalJSON(b []byte) error {
	var j jsonConfig
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("consensus.crdt: %w", err)
	}
	cfg := DefaultConfig()
	if j.ClusterName != "" {
		cfg.ClusterName = j.ClusterName
	}
	if j.TrustedPeers != nil {
		cfg.TrustedPeers = j.TrustedPeers
	}
	if j.DatastoreNamespace != "" {
		cfg.DatastoreNamespace = j.DatastoreNamespace
	}
	cfg.Batching.MaxBatchSize = j.Batching.MaxBatchSize
	if j.Batching.MaxQueueSize != 0 {
		cfg.Batching.MaxQueueSize = j.Batching.MaxQueueSize
	}
	for _, d := range []struct {
		key string
		s   string
		dst *time.Duration
	}{
		{"batching.max_batch_age", j.Batching.MaxBatchAge, &cfg.Batching.MaxBatchAge},
		{"repair_interval", j.RepairInterval, &cfg.RepairInterval},
		{"rebroadcast_interval", j.RebroadcastInterval, &cfg.RebroadcastInterval},
		{"dag_sync_timeout", j.DAGSyncTimeout, &cfg.DAGSyncTimeout},
	} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return fmt.Errorf("consensus.crdt: %s: %w", d.key, err)
		}
		*d.dst = v
	}
	*c = cfg
	return nil
}
