package ipfsconn

import (
	"fmt"
	"time"
)

// Config configures a Connector. The peer fills it from the
// ipfs_connector.ipfshttp section of service.json; the comments name the
// keys. A zero field takes its default.
type Config struct {
	// NodeMultiaddress is kubo's RPC API address (node_multiaddress):
	// /ip4, /ip6, /dns, /dns4, /dns6 with /tcp, or a /unix socket path.
	NodeMultiaddress string
	// ConnectSwarmsDelay is how long after start the peer waits before
	// connecting its kubo to the other peers' (connect_swarms_delay). The
	// Connector does not act on it: the cluster core does, through
	// SwarmConnect.
	ConnectSwarmsDelay time.Duration
	// IPFSRequestTimeout bounds every call that has no timeout of its own
	// (ipfs_request_timeout), and how long kubo may hold up a block
	// stream without taking data or answering, up to maxStreamStall.
	IPFSRequestTimeout time.Duration
	// PinTimeout is how long a pin may go without fetching a new block
	// before it is abandoned (pin_timeout).
	PinTimeout time.Duration
	// UnpinTimeout bounds pin/rm (unpin_timeout).
	UnpinTimeout time.Duration
	// RepoGCTimeout bounds repo/gc (repogc_timeout).
	RepoGCTimeout time.Duration
	// UnpinDisable makes Unpin refuse to unpin (unpin_disable).
	UnpinDisable bool
	// MaxConcurrentRequests bounds the requests in flight toward kubo
	// (max_concurrent_requests). Pins draw from a second pool of the same
	// size; see Connector.
	MaxConcurrentRequests int
}

// DefaultConfig returns the defaults of every setting.
func DefaultConfig() Config {
	return Config{
		NodeMultiaddress:      "/ip4/127.0.0.1/tcp/5001",
		ConnectSwarmsDelay:    30 * time.Second,
		IPFSRequestTimeout:    5 * time.Minute,
		PinTimeout:            2 * time.Minute,
		UnpinTimeout:          3 * time.Hour,
		RepoGCTimeout:         24 * time.Hour,
		MaxConcurrentRequests: 32,
	}
}

// withDefaults fills zero fields with their defaults and rejects negative
// ones.
func (cfg Config) withDefaults() (Config, error) {
	def := DefaultConfig()
	if cfg.NodeMultiaddress == "" {
		cfg.NodeMultiaddress = def.NodeMultiaddress
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"connect_swarms_delay", &cfg.ConnectSwarmsDelay, def.ConnectSwarmsDelay},
		{"ipfs_request_timeout", &cfg.IPFSRequestTimeout, def.IPFSRequestTimeout},
		{"pin_timeout", &cfg.PinTimeout, def.PinTimeout},
		{"unpin_timeout", &cfg.UnpinTimeout, def.UnpinTimeout},
		{"repogc_timeout", &cfg.RepoGCTimeout, def.RepoGCTimeout},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return cfg, fmt.Errorf("%s must not be negative, got %s", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxConcurrentRequests < 0 {
		return cfg, fmt.Errorf("max_concurrent_requests must not be negative, got %d", cfg.MaxConcurrentRequests)
	}
	if cfg.MaxConcurrentRequests == 0 {
		cfg.MaxConcurrentRequests = def.MaxConcurrentRequests
	}
	return cfg, nil
}
