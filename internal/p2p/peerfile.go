package p2p

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/rs/zerolog"
)

// PeerstoreFile is the default name of the peerstore file in the config
// folder (cluster.peerstore_file).
const PeerstoreFile = "peerstore"

// DefaultSaveDelay is how long PeerFile waits after a change before it
// writes the file, so that a burst of connections costs one write.
const DefaultSaveDelay = 5 * time.Second

// PeerFile keeps the peerstore file: one multiaddress ending in /p2p/<id>
// per line. Its addresses are loaded into the host when it opens (after the
// permanent peer_addresses, which never expire); the addresses of every
// known peer are written back after changes (debounced) and at Close, so
// that a restarted peer finds the cluster again. Safe for concurrent use.
type PeerFile struct {
	h         host.Host
	path      string
	permanent []peer.ID // peers of peer_addresses, in their order
	log       zerolog.Logger

	mu   sync.Mutex // serializes writes
	last []byte     // the file's content as last read or written

	sub  event.Subscription
	done chan struct{}
}

// OpenPeerFile loads the permanent addresses (peer_addresses) and the file
// at path into h, then watches h for peers and addresses to save, writing
// at most once per delay (DefaultSaveDelay when <= 0). A missing file is
// an empty one; a line that does not parse is skipped with a warning.
func OpenPeerFile(h host.Host, path string, permanent []string, delay time.Duration, log zerolog.Logger) (*PeerFile, error) {
	if delay <= 0 {
		delay = DefaultSaveDelay
	}
	f := &PeerFile{h: h, path: path, log: log, done: make(chan struct{})}
	perm, err := ParsePeerAddrs(permanent)
	if err != nil {
		return nil, fmt.Errorf("peer_addresses: %w", err)
	}
	for _, ai := range perm {
		if ai.ID == h.ID() {
			continue
		}
		h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
		if !slices.Contains(f.permanent, ai.ID) {
			f.permanent = append(f.permanent, ai.ID)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read peerstore file: %w", err)
	}
	f.last = data
	for _, ai := range f.parseFile(data) {
		if ai.ID != h.ID() {
			h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.AddressTTL)
		}
	}
	f.sub, err = h.EventBus().Subscribe([]any{
		new(event.EvtPeerIdentificationCompleted),
		new(event.EvtPeerConnectednessChanged),
	})
	if err != nil {
		return nil, fmt.Errorf("watch peers: %w", err)
	}
	go f.watch(delay)
	return f, nil
}

// watch saves the file delay after the first change following a save.
func (f *PeerFile) watch(delay time.Duration) {
	defer close(f.done)
	timer := time.NewTimer(delay)
	timer.Stop()
	pending := false
	for {
		select {
		case _, ok := <-f.sub.Out():
			if !ok {
				timer.Stop()
				return
			}
			if !pending {
				pending = true
				timer.Reset(delay)
			}
		case <-timer.C:
			pending = false
			if err := f.Save(); err != nil {
				f.log.Warn().Err(err).Msg("saving the peerstore file")
			}
		}
	}
}

// Close stops watching and saves the file one last time.
func (f *PeerFile) Close() error {
	f.sub.Close()
	<-f.done
	return f.Save()
}

// Save writes the addresses of every peer the host knows, except itself,
// sorted; it does not touch the file when nothing changed.
func (f *PeerFile) Save() error {
	ps := f.h.Peerstore()
	var lines []string
	for _, p := range ps.PeersWithAddrs() {
		if p == f.h.ID() {
			continue
		}
		addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: p, Addrs: ps.Addrs(p)})
		if err != nil {
			continue
		}
		for _, a := range addrs {
			lines = append(lines, a.String())
		}
	}
	slices.Sort(lines)
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if bytes.Equal(buf.Bytes(), f.last) {
		return nil
	}
	if err := writeFileAtomic(f.path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("save peerstore file: %w", err)
	}
	f.last = buf.Bytes()
	return nil
}

// Bootstrap connects to up to n known peers, the permanent ones first in
// their configured order, then the others in random order, and returns the
// peers it is connected to. Peers already connected count without a dial;
// each dial is bounded by timeout.
func (f *PeerFile) Bootstrap(ctx context.Context, n int, timeout time.Duration) []peer.ID {
	var others []peer.ID
	for _, p := range f.h.Peerstore().PeersWithAddrs() {
		if p != f.h.ID() && !slices.Contains(f.permanent, p) {
			others = append(others, p)
		}
	}
	rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	candidates := append(slices.Clone(f.permanent), others...)

	var connected []peer.ID
	for len(candidates) > 0 && len(connected) < n && ctx.Err() == nil {
		batch := candidates[:min(n-len(connected), len(candidates))]
		candidates = candidates[len(batch):]
		errs := Fanout(ctx, batch, timeout, func(ctx context.Context, _ int, p peer.ID) error {
			if f.h.Network().Connectedness(p) == network.Connected {
				return nil
			}
			return f.h.Connect(ctx, peer.AddrInfo{ID: p})
		})
		for i, err := range errs {
			if err != nil {
				f.log.Debug().Err(err).Stringer("peer", batch[i]).Msg("bootstrap: cannot connect")
				continue
			}
			connected = append(connected, batch[i])
		}
	}
	return connected
}

// parseFile parses the file's lines, skipping blank lines, # comments and,
// with a warning, lines that are not multiaddresses with /p2p/.
func (f *PeerFile) parseFile(data []byte) []peer.AddrInfo {
	var out []peer.AddrInfo
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ai, err := parseP2PAddr(line)
		if err != nil {
			f.log.Warn().Err(err).Str("file", f.path).Int("line", n).Msg("peerstore file: line skipped")
			continue
		}
		out = append(out, *ai)
	}
	return out
}

// ParsePeerAddrs parses multiaddresses that each end in /p2p/<peer ID>.
func ParsePeerAddrs(addrs []string) ([]peer.AddrInfo, error) {
	out := make([]peer.AddrInfo, 0, len(addrs))
	for _, s := range addrs {
		ai, err := parseP2PAddr(s)
		if err != nil {
			return nil, err
		}
		out = append(out, *ai)
	}
	return out, nil
}

func parseP2PAddr(s string) (*peer.AddrInfo, error) {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return nil, fmt.Errorf("%q: want a multiaddress ending in /p2p/<peer ID>: %w", s, err)
	}
	return ai, nil
}

// writeFileAtomic writes through a temporary file and a rename, so that a
// crash never leaves a truncated file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// WritePeerFile writes a peerstore file holding the addresses of peers,
// each as a multiaddress ending in /p2p/<peer ID>, once each.
func WritePeerFile(path string, peers []peer.AddrInfo) error {
	var lines []string
	for _, ai := range peers {
		addrs, err := peer.AddrInfoToP2pAddrs(&ai)
		if err != nil {
			return fmt.Errorf("write peerstore file: %w", err)
		}
		for _, a := range addrs {
			if l := a.String(); !slices.Contains(lines, l) {
				lines = append(lines, l)
			}
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("write peerstore file: %w", err)
	}
	return nil
}
