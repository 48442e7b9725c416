package p2p

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"
)

func p2pAddr(t *testing.T, h host.Host) string {
	t.Helper()
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if err != nil || len(addrs) == 0 {
		t.Fatalf("addresses of %s: %v", h.ID(), err)
	}
	return addrs[0].String()
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// The file written at Close lists the peers a host knows; a new host that
// opens it finds them again and can bootstrap from them.
func TestPeerFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), PeerstoreFile)
	secret := testSecret(5)
	a := newTestHost(t, loopbackConfig(secret))
	b := newTestHost(t, loopbackConfig(secret))
	c := newTestHost(t, loopbackConfig(secret))

	f, err := OpenPeerFile(a, path, nil, time.Hour, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	connect(t, a, b)
	connect(t, a, c)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	for _, h := range []host.Host{b, c} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasSuffix(l, "/p2p/"+h.ID().String()) }) {
			t.Fatalf("file %q lacks %s", lines, h.ID())
		}
	}
	if slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, a.ID().String()) }) {
		t.Fatalf("file %q lists the host itself", lines)
	}

	// A new host loads the file, skipping comments and bad lines, and
	// bootstraps from it.
	extra := "# a comment\n\nnot a multiaddress\n/ip4/127.0.0.1/tcp/1\n"
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append([]byte(extra), data...), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newTestHost(t, loopbackConfig(secret))
	g, err := OpenPeerFile(d, path, nil, time.Hour, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, h := range []host.Host{b, c} {
		if len(d.Peerstore().Addrs(h.ID())) == 0 {
			t.Fatalf("no address of %s loaded", h.ID())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got := g.Bootstrap(ctx, 1, 3*time.Second); len(got) != 1 {
		t.Fatalf("bootstrap to 1 peer connected %v", got)
	}
	if got := g.Bootstrap(ctx, 3, 3*time.Second); len(got) != 2 {
		t.Fatalf("bootstrap to 3 peers connected %v, want the 2 known", got)
	}
}

// peer_addresses come first in Bootstrap, in their order, and a change is
// saved after the delay without waiting for Close.
func TestPeerFilePermanentAndDebounce(t *testing.T) {
	path := filepath.Join(t.TempDir(), PeerstoreFile)
	secret := testSecret(6)
	a := newTestHost(t, loopbackConfig(secret))
	b := newTestHost(t, loopbackConfig(secret))
	c := newTestHost(t, loopbackConfig(secret))
	dead := newTestHost(t, loopbackConfig(secret))
	deadAddr := p2pAddr(t, dead)
	dead.Close()

	// c is known from the file only; b and the dead peer are permanent.
	if err := os.WriteFile(path, []byte(p2pAddr(t, c)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenPeerFile(a, path, []string{deadAddr, p2pAddr(t, b), p2pAddr(t, a)}, 50*time.Millisecond, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := f.Bootstrap(ctx, 1, 2*time.Second)
	if len(got) != 1 || got[0] != b.ID() {
		t.Fatalf("bootstrap connected %v, want the first live permanent peer %s", got, b.ID())
	}
	waitFor(t, 5*time.Second, "the file to list the new connection", func() bool {
		data, _ := os.ReadFile(path)
		return strings.Contains(string(data), b.ID().String())
	})
	if _, err := OpenPeerFile(a, path, []string{"/ip4/127.0.0.1/tcp/1"}, 0, zerolog.Nop()); err == nil {
		t.Fatal("a peer address without /p2p/ was accepted")
	}
}
