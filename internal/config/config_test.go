package config

import (
	"errors"
	"os"
	"path/filepath"
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
		`{"pin_tracker":{"stateless":{"concurrent_pins":"ten"}}}`:             "pin_tracker.stateless.concurrent_pins",
		`{"pin_tracker":{"stateless":{"concurrent_pins":0}}}`:                 "pin_tracker.stateless.concurrent_pins",
		`{"ipfs_connector":{"ipfshttp":{"pin_timeout":"soon"}}}`:              "ipfs_connector.ipfshttp.pin_timeout",
		`{"ipfs_connector":{"ipfshttp":{"node_multiaddress":"x"}}}`:           "ipfs_connector.ipfshttp.node_multiaddress",
		`{"cluster":{"secret":"abc"}}`:                                        "cluster.secret",
		`{"cluster":{"replication_factor_min":3,"replication_factor_max":2}}`: "replication_factor_min",
		`{"api":{"restapi":{"http_listen_multiaddress":"nope"}}}`:             "api.restapi.http_listen_multiaddress",
	}
	for in, key := range cases {
		_, err := Parse([]byte(in), noEnv)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: want an error naming %s, got %v", in, key, err)
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
	c, err := Parse([]byte(`{"cluster":{"peername":"p","frobnicate":1},"consensus":{"raft":{}},"api":{"restapi":{},"pinsvcapi":{}}}`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(c.Warnings, "\n")
	for _, want := range []string{"cluster.frobnicate", "consensus.raft", "api.pinsvcapi"} {
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
	}
	c, err := Parse([]byte(`{"api":{"restapi":{}}}`), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.Peername != "from-env" || c.IPFSConnector.IPFSHTTP.NodeMultiaddress != "/ip4/127.0.0.1/tcp/5999" ||
		len(c.API.RestAPI.HTTPListenMultiaddress) != 2 || c.PinTracker.Stateless.ConcurrentPins != 3 ||
		c.IPFSConnector.IPFSHTTP.PinTimeout.D() != 5*time.Second {
		t.Fatalf("env not applied: %+v", c)
	}
	env["CLUSTER_STATELESS_CONCURRENTPINS"] = "many"
	_, err = Parse([]byte(`{}`), func(k string) string { return env[k] })
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
