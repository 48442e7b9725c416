package kubo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// nowhereDoH is a DNS-over-HTTP endpoint on the loopback discard port.
const nowhereDoH = "http://127.0.0.1:9/dns-query"

// loopbackSettings are written into every repo's config. Each key exists in
// kubo v0.38's config schema; together they keep a daemon on 127.0.0.1 and
// stop every subsystem that would otherwise reach out to the internet.
var loopbackSettings = []struct {
	key   string
	value any
}{
	{"Addresses.API", tcpAddr(0)},
	{"Addresses.Swarm", []string{tcpAddr(0)}},
	{"Addresses.Gateway", tcpAddr(0)},
	{"Addresses.Announce", []string{}},
	{"Addresses.AppendAnnounce", []string{}},
	{"Addresses.NoAnnounce", []string{}},
	{"Bootstrap", []string{}},
	{"Peering.Peers", []any{}},
	{"Discovery.MDNS.Enabled", false},
	// No DHT and no delegated HTTP routers: content is only found on peers
	// we are explicitly connected to.
	{"Routing.Type", "none"},
	{"Routing.DelegatedRouters", []string{}},
	{"Ipns.DelegatedPublishers", []string{}},
	// Every DNS lookup (DNSLink, /dns multiaddrs) goes to a DNS-over-HTTP
	// resolver on a loopback port where nothing answers, instead of the
	// system resolver or kubo's built-in DoH servers for .eth and .crypto.
	{"DNS.Resolvers", map[string]string{".": nowhereDoH, "eth.": nowhereDoH, "crypto.": nowhereDoH}},
	{"AutoConf.Enabled", false},
	{"AutoTLS.Enabled", false},
	{"AutoNAT.ServiceMode", "disabled"},
	{"Swarm.DisableNatPortMap", true},
	{"Swarm.EnableHolePunching", false},
	{"Swarm.RelayClient.Enabled", false},
	{"Swarm.RelayService.Enabled", false},
	{"Swarm.Transports.Network.TCP", true},
	{"Swarm.Transports.Network.QUIC", false},
	{"Swarm.Transports.Network.Websocket", false},
	{"Swarm.Transports.Network.WebTransport", false},
	{"Swarm.Transports.Network.WebRTCDirect", false},
	{"Swarm.Transports.Network.Relay", false},
	{"Provide.Enabled", false},
	{"HTTPRetrieval.Enabled", false},
	{"Datastore.StorageMax", "10GB"},
	{"Plugins.Plugins.telemetry.Config.Mode", "off"},
}

// Init creates a kubo repo in repoDir (`ipfs init --profile test`) and
// rewrites its config so that the daemon listens on 127.0.0.1 only, on
// ports chosen by the kernel at start, and never contacts the internet. repoDir must not hold
// a repo already.
func Init(ctx context.Context, repoDir string) error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(repoDir, 0o700); err != nil {
		return fmt.Errorf("kubo init: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, "init", "--profile", "test", "--empty-repo")
	cmd.Env = daemonEnv(repoDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubo init %s: %w: %s", repoDir, err, bytes.TrimSpace(out))
	}
	return editConfig(repoDir, func(cfg map[string]any) error {
		for _, s := range loopbackSettings {
			if err := setKey(cfg, s.key, s.value); err != nil {
				return err
			}
		}
		return nil
	})
}

// tcpAddr is the loopback TCP multiaddress of port (0: chosen by the kernel).
func tcpAddr(port int) string { return "/ip4/127.0.0.1/tcp/" + strconv.Itoa(port) }

// editConfig loads $repoDir/config, applies edit and writes it back
// atomically so that a crash never leaves a truncated config behind.
func editConfig(repoDir string, edit func(map[string]any) error) error {
	p := filepath.Join(repoDir, "config")
	raw, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("kubo config: %w", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("kubo config %s: %w", p, err)
	}
	if err := edit(cfg); err != nil {
		return fmt.Errorf("kubo config %s: %w", p, err)
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("kubo config %s: %w", p, err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return fmt.Errorf("kubo config: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("kubo config: %w", err)
	}
	return nil
}

// setKey sets a dotted key such as "Swarm.RelayClient.Enabled", creating
// intermediate objects (kubo leaves many sections null or empty).
func setKey(cfg map[string]any, key string, value any) error {
	parts := strings.Split(key, ".")
	m := cfg
	for _, part := range parts[:len(parts)-1] {
		next, ok := m[part].(map[string]any)
		if !ok {
			if m[part] != nil {
				return fmt.Errorf("set %s: %s is not an object", key, part)
			}
			next = map[string]any{}
			m[part] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = value
	return nil
}

// daemonEnv is the environment of every kubo process: the parent's, minus
// any IPFS_* variable (IPFS_HTTP_ROUTERS, for one, would add routers behind
// the config's back), plus the repo path and telemetry off.
func daemonEnv(repoDir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IPFS_") {
			env = append(env, kv)
		}
	}
	return append(env, "IPFS_PATH="+repoDir, "IPFS_TELEMETRY=off")
}
