package crdt

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
)

// TrustAll in trusted_peers trusts every peer.
const TrustAll = "*"

// Config holds the settings of the "consensus.crdt" section of service.json
// (the config package reads it; the keys are the reference's, except
// DAGSyncTimeout, as the reference hard-codes 2 minutes, and FsyncAcks).
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
	// FsyncAcks makes every acknowledgement wait until the operation is
	// fsynced in the journal, so that it survives a power failure of this
	// machine too. Without it an acknowledged operation is written to the
	// journal (it survives any crash of the process) and fsynced within
	// journalSyncInterval.
	FsyncAcks bool
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
