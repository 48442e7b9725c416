package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestDefaultRoundTrip(t *testing.T) {
	c := Default()
	c.Cluster.Secret, _ = NewSecret()
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Warnings) != 0 {
		t.Fatalf("warnings on our own output: %v", got.Warnings)
	}
	if got.PinTracker.Stateless.ConcurrentPins != 10 || got.IPFSConnector.IPFSHTTP.PinTimeout.D() != 2*time.Minute {
		t.Fatalf("defaults lost: %+v", got.PinTracker.Stateless)
	}
	if got.API.RestAPI == nil || got.API.RestAPI.HTTPListenMultiaddress[0] != "/ip4/127.0.0.1/tcp/9094" {
		t.Fatalf("restapi section lost: %+v", got.API.RestAPI)
	}
}

func TestInvalidValueNamesKey(t *testing.T) {
	cases := map[string]string{
		`{"pin_tracker":{"stateless":{"concurrent_pins":"ten"}}}`:                           "pin_tracker.stateless.concurrent_pins",
		`{"pin_tracker":{"stateless":{"concurrent_pins":0}}}`:                               "pin_tracker.stateless.concurrent_pins",
		`{"ipfs_connector":{"ipfshttp":{"pin_timeout":"soon"}}}`:                            "ipfs_connector.ipfshttp.pin_timeout",
		`{"ipfs_connector":{"ipfshttp":{"node_multiaddress":"x"}}}`:                         "ipfs_connector.ipfshttp.node_multiaddress",
		`{"cluster":{"secret":"abc"}}`:                                                      "cluster.secret",
		`{"cluster":{"replication_factor_min":3,"replication_factor_max":2}}`:               "replication_factor_min",
		`{"api":{"restapi":{"http_listen_multiaddress":"nope"}}}`:                           "api.restapi.http_listen_multiaddress",
		`{"api":{"restapi":{"cors_max_age":"-1s"}}}`:                                        "api.restapi.cors_max_age",
		`{"informer":{"disk":{"metric_ttl":"0s"}}}`:                                         "informer.disk.metric_ttl",
		`{"api":{"restapi":{"read_timeout":"-5s"}}}`:                                        "api.restapi.read_timeout",
		`{"cluster":{"pubsub":{"d_factor":0}}}`:                                             "cluster.pubsub.d_factor",
		`{"consensus":{"crdt":{"batching":{"max_batch_age":"banana"}}}}`:                    "consensus.crdt.batching.max_batch_age",
		`{"cluster":{"pubsub":{"history_gossip":4,"history_length":3}}}`:                    "cluster.pubsub.history_length",
		`{"cluster":{"pubsub":{"heartbeat_interval":"0s"}}}`:                                "cluster.pubsub.heartbeat_interval",
		`{"cluster":{"resource_manager":{"memory_limit_bytes":-1}}}`:                        "cluster.resource_manager",
		`{"cluster":{"pin_only_on_trusted_peers":true,"pin_only_on_untrusted_peers":true}}`: "cluster.pin_only_on_untrusted_peers",
	}
	for in, key := range cases {
		if !strings.Contains(in, `"cluster"`) {
			in = `{"cluster":{},` + in[1:]
		}
		_, err := Parse([]byte(in), noEnv)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: want an error naming %s, got %v", in, key, err)
		}
	}
}

// A service.json that lost its cluster section, or is null, would start
// a peer without its secret: refused.
func TestNoClusterSection(t *testing.T) {
	for _, in := range []string{`null`, `{}`, `{"api":{"restapi":{}}}`} {
		if _, err := Parse([]byte(in), noEnv); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want a configuration error", in, err)
		}
	}
}

func TestMalformedJSONGivesPosition(t *testing.T) {
	_, err := Parse([]byte("{\n  \"cluster\": {\n    \"peername\": \"a\",,\n  }\n}"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("want line 3 in error, got %v", err)
	}
}

func TestUnknownKeysWarn(t *testing.T) {
	c, err := Parse([]byte(`{"cluster":{"peername":"p","frobnicate":1},"consensus":{"raft":{},"crdt":{"batching":{"bogus":1}}},"api":{"restapi":{},"pinsvcapi":{}}}`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(c.Warnings, "\n")
	for _, want := range []string{"cluster.frobnicate", "consensus.raft", "consensus.crdt.batching.bogus", "api.pinsvcapi"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no warning for %s in %q", want, joined)
		}
	}
	if c.Cluster.Peername != "p" {
		t.Fatalf("peername = %q", c.Cluster.Peername)
	}
}

func TestRestAPIOffWithoutSection(t *testing.T) {
	c, err := Parse([]byte(`{"cluster":{}}`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.API.RestAPI != nil {
		t.Fatal("restapi enabled without its section")
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"CLUSTER_PEERNAME":                       "from-env",
		"CLUSTER_IPFSHTTP_NODEMULTIADDRESS":      "/ip4/127.0.0.1/tcp/5999",
		"CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS": "/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2",
		"CLUSTER_STATELESS_CONCURRENTPINS":       "3",
		"CLUSTER_IPFSHTTP_PINTIMEOUT":            "5s",
		// Maps as the reference's envconfig reads them, or JSON.
		"CLUSTER_RESTAPI_BASICAUTHCREDENTIALS": "u1:pw1, u2:p:w2",
		"CLUSTER_TAGS_TAGS":                    `{"group":"east"}`,
		// As $(cat secretfile) gives it.
		"CLUSTER_SECRET": strings.Repeat("ab", 32) + "\n",
	}
	c, err := Parse([]byte(`{"cluster":{},"api":{"restapi":{}}}`), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.Peername != "from-env" || c.IPFSConnector.IPFSHTTP.NodeMultiaddress != "/ip4/127.0.0.1/tcp/5999" ||
		len(c.API.RestAPI.HTTPListenMultiaddress) != 2 || c.PinTracker.Stateless.ConcurrentPins != 3 ||
		c.IPFSConnector.IPFSHTTP.PinTimeout.D() != 5*time.Second || c.Cluster.Secret != strings.Repeat("ab", 32) {
		t.Fatalf("env not applied: %+v", c)
	}
	if creds := c.API.RestAPI.BasicAuthCredentials; len(creds) != 2 || creds["u1"] != "pw1" || creds["u2"] != "p:w2" {
		t.Fatalf("basic_auth_credentials from key:value pairs: %v", creds)
	}
	if tags := c.Informer.Tags.Tags; len(tags) != 1 || tags["group"] != "east" {
		t.Fatalf("tags from JSON: %v", tags)
	}
	env["CLUSTER_TAGS_TAGS"] = "group"
	_, err = Parse([]byte(`{"cluster":{}}`), func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "CLUSTER_TAGS_TAGS") || !strings.Contains(err.Error(), "key:value") {
		t.Fatalf("bad map value not reported: %v", err)
	}
	env["CLUSTER_TAGS_TAGS"] = "group:east"
	env["CLUSTER_STATELESS_CONCURRENTPINS"] = "many"
	_, err = Parse([]byte(`{"cluster":{}}`), func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "CLUSTER_STATELESS_CONCURRENTPINS") {
		t.Fatalf("bad env value not reported: %v", err)
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	dir := t.TempDir()
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if err := id.Save(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity.json mode: %v %v", st.Mode(), err)
	}
	got, err := LoadIdentity(dir, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != id.ID {
		t.Fatalf("id %s != %s", got.ID, id.ID)
	}
	other, _ := NewIdentity()
	_, err = LoadIdentity(dir, func(k string) string {
		if k == "CLUSTER_ID" {
			return other.ID.String()
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched id accepted: %v", err)
	}
}

// A service.json written by IPFS Cluster 1.1.6's `init` loads: every key
// this version uses takes the reference's value, and what it ignores is
// named with the reason.
func TestReferenceConfigLoads(t *testing.T) {
	raw, err := os.ReadFile("testdata/reference-service.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(raw, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"key cluster.leave_on_shutdown ignored: only raft consensus uses it",
		"key cluster.mdns_interval ignored: there is no mDNS discovery; peers are found through peer_addresses, the peerstore file and --bootstrap",
		"key cluster.peer_watch_interval ignored: only raft consensus uses it",
		"key ipfs_connector.ipfshttp.informer_trigger_interval ignored: metrics are sent on their own intervals",
		"section api.ipfsproxy is not used by this version; ignored",
		"section api.pinsvcapi is not used by this version; ignored",
		"section datastore.pebble is not used by this version; ignored",
		"section observations.tracing is not used by this version; ignored",
	}
	got := slices.Clone(c.Warnings)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	cl, r := c.Cluster, c.API.RestAPI
	if !cl.EnableRelayHop || !cl.ResourceManager.Enabled || cl.PubSub.DFactor != 4 || cl.PubSub.FloodPublish ||
		cl.PubSub.HeartbeatInterval.D() != 10*time.Second || cl.PubSub.HistoryLength != 6 {
		t.Errorf("cluster: %+v", cl)
	}
	if r == nil || !slices.Equal(r.CORSAllowedMethods, []string{"GET"}) || !r.CORSAllowCredentials ||
		len(r.CORSExposedHeaders) != 4 || r.CORSMaxAge != 0 {
		t.Errorf("restapi: %+v", r)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestUnknownSectionNamedWhole: a top-level section the reference does not
// have is named as a whole, not by its keys.
func TestUnknownSectionNamedWhole(t *testing.T) {
	c, err := Parse([]byte(`{"cluster":{},"foo":{"a":1},"api":{"restapi":{},"bar":{}}}`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"section api.bar is not used by this version; ignored", "section foo is not used by this version; ignored"}
	got := slices.Clone(c.Warnings)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("warnings %q, want %q", got, want)
	}
}
