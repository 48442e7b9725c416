package api

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// reflected is Pin without its MarshalJSON: what encoding/json alone makes.
type reflected Pin

func randomPin(r *rand.Rand, peers []peer.ID) Pin {
	word := func() string {
		alphabet := []string{"a", "Z", "<", ">", "&", "\"", "\\", "\n", "é", "\u2028", "\xff", " ", "7"}
		var sb strings.Builder
		for range r.IntN(6) {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return sb.String()
	}
	mkcid := func() Cid {
		h, _ := mh.Sum([]byte(word()+time.Now().String()), mh.SHA2_256, -1)
		if r.IntN(2) == 0 {
			return NewCid(cid.NewCidV0(h))
		}
		return NewCid(cid.NewCidV1(cid.DagProtobuf, h))
	}
	p := PinWithOpts(mkcid(), PinOptions{
		ReplicationFactorMin: r.IntN(5) - 1, ReplicationFactorMax: r.IntN(5) - 1,
		Name: word(), ShardSize: r.Uint64(),
	})
	if r.IntN(2) == 0 {
		p.Mode, p.MaxDepth = PinModeDirect, 0
	}
	if r.IntN(2) == 0 {
		p.ExpireAt = time.Unix(r.Int64N(1<<35), r.Int64N(1e9)).UTC()
	}
	if r.IntN(3) > 0 {
		p.Timestamp = time.Unix(r.Int64N(1<<34), r.Int64N(1e9)).In(time.FixedZone("x", 3600))
	}
	switch r.IntN(3) {
	case 1:
		p.Metadata = map[string]string{}
	case 2:
		p.Metadata = map[string]string{word(): word(), word(): word(), "k": word()}
	}
	for i := range r.IntN(4) {
		p.Allocations = append(p.Allocations, peers[i])
	}
	if r.IntN(4) == 0 {
		p.Allocations = []peer.ID{}
	}
	if r.IntN(4) == 0 {
		p.UserAllocations = []peer.ID{peers[0]}
	}
	if r.IntN(3) == 0 {
		p.PinUpdate = mkcid()
	}
	if r.IntN(3) == 0 {
		ref := mkcid()
		p.Reference = &ref
		p.Type = ShardType
	}
	if r.IntN(3) == 0 {
		o, _ := NewMultiaddr("/ip4/127.0.0.1/tcp/4001/p2p/" + peers[1].String())
		p.Origins = []Multiaddr{o, {}}
	}
	return p
}

func TestPinJSONMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	peers := testPeers(t, 4)
	names := NewTextCache()
	for i := range 2000 {
		p := randomPin(r, peers)
		// What encoding/json writes, with the arrays that are never null.
		q := p
		q.Allocations, q.Origins = orEmpty(q.Allocations), orEmpty(q.Origins)
		want, err := json.Marshal((*reflected)(&q))
		if err != nil {
			t.Fatal(err)
		}
		if got := p.AppendJSON(nil, names); string(got) != string(want) {
			t.Fatalf("pin %d:\n got %s\nwant %s", i, got, want)
		}
		if got, _ := json.Marshal(p); string(got) != string(want) {
			t.Fatalf("json.Marshal(pin) %d differs:\n got %s\nwant %s", i, got, want)
		}
		var back Pin
		if err := json.Unmarshal(want, &back); err != nil || back.Cid != p.Cid {
			t.Fatalf("decode: %v %+v", err, back)
		}
	}
}

func TestPinArraysAreNeverNull(t *testing.T) {
	var p Pin
	got := string(p.AppendJSON(nil, nil))
	if !strings.Contains(got, `"allocations":[]`) || !strings.Contains(got, `"origins":[]`) {
		t.Fatalf("pin without allocations or origins: %s", got)
	}
	var gpi GlobalPinInfo
	got = string(gpi.AppendJSON(nil, nil))
	if !strings.Contains(got, `"allocations":[]`) || !strings.Contains(got, `"origins":[]`) {
		t.Fatalf("status without allocations or origins: %s", got)
	}
}

func testPeers(t testing.TB, n int) []peer.ID {
	t.Helper()
	var out []peer.ID
	for i := range n {
		h, err := mh.Sum([]byte{byte(i)}, mh.IDENTITY, -1)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, peer.ID(h))
	}
	return out
}

func BenchmarkPinAppendJSON(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	peers := testPeers(b, 4)
	p := randomPin(r, peers)
	p.Name, p.Metadata = "a-name", map[string]string{"owner": "alice"}
	names := NewTextCache()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = p.AppendJSON(buf[:0], names)
	}
}

func BenchmarkPinEncodingJSON(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	p := randomPin(r, testPeers(b, 4))
	p.Name, p.Metadata = "a-name", map[string]string{"owner": "alice"}
	b.ReportAllocs()
	for b.Loop() {
		json.Marshal((*reflected)(&p))
	}
}

type reflectedGPI GlobalPinInfo

func TestGlobalPinInfoJSONMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	peers := testPeers(t, 4)
	names := NewTextCache()
	for i := range 1000 {
		p := randomPin(r, peers)
		gpi := GlobalPinInfo{Cid: p.Cid, Name: p.Name, Allocations: p.Allocations, Origins: p.Origins, Created: p.Timestamp, Metadata: p.Metadata}
		for j := range r.IntN(4) {
			s := PinInfoShort{PeerName: p.Name, Status: TrackerStatusAll[r.IntN(len(TrackerStatusAll))],
				TS: time.Unix(r.Int64N(1<<33), r.Int64N(1e9)).UTC(), Error: p.Name, AttemptCount: r.IntN(9), PriorityPin: r.IntN(2) == 0}
			if r.IntN(2) == 0 {
				s.IPFS = peers[j]
				o, _ := NewMultiaddr("/ip4/127.0.0.1/tcp/4001")
				s.IPFSAddresses = []Multiaddr{o}
			}
			if gpi.PeerMap == nil {
				gpi.PeerMap = map[string]PinInfoShort{}
			}
			gpi.PeerMap[peers[j].String()] = s
		}
		q := gpi
		q.Allocations, q.Origins = orEmpty(q.Allocations), orEmpty(q.Origins)
		want, err := json.Marshal((*reflectedGPI)(&q))
		if err != nil {
			t.Fatal(err)
		}
		if got := gpi.AppendJSON(nil, names); string(got) != string(want) {
			t.Fatalf("gpi %d:\n got %s\nwant %s", i, got, want)
		}
		if got, _ := json.Marshal(gpi); string(got) != string(want) {
			t.Fatalf("json.Marshal(gpi) %d differs", i)
		}
	}
}

// TestTextCache checks that cached text equals the encoding, also once
// the cache has been emptied for growing past its bound.
func TestTextCache(t *testing.T) {
	peers := testPeers(t, textCacheSize+10)
	names := NewTextCache()
	for round := range 2 {
		for i, p := range peers {
			if got := names.Peer(p); got != p.String() {
				t.Fatalf("round %d, peer %d: %q, want %q", round, i, got, p.String())
			}
			a, err := NewMultiaddr("/ip4/10.0.0.1/tcp/" + strconv.Itoa(i) + "/p2p/" + p.String())
			if err != nil {
				t.Fatal(err)
			}
			if got := names.Addr(a.Multiaddr); got != a.String() {
				t.Fatalf("round %d, address %d: %q, want %q", round, i, got, a.String())
			}
			back, err := parseAddr(a.Bytes())
			if err != nil || !back.Equal(a.Multiaddr) {
				t.Fatalf("parseAddr(%s) = %v, %v", a, back, err)
			}
		}
	}
	if len(names.peers) > textCacheSize || len(names.addrs) > textCacheSize || len(parsedAddrs.m) > textCacheSize {
		t.Fatalf("caches grew past %d: %d peers, %d addresses, %d parsed", textCacheSize, len(names.peers), len(names.addrs), len(parsedAddrs.m))
	}
	if _, err := parseAddr([]byte{0xff, 0xff}); err == nil {
		t.Fatal("parseAddr accepted garbage")
	}
	// A nil cache uses the shared one, from many goroutines at once.
	var none *TextCache
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for round := range 2 {
				for i := g; i < len(peers); i += 4 {
					if got := none.Peer(peers[i]); got != peers[i].String() {
						t.Errorf("shared cache, round %d, peer %d: %q, want %q", round, i, got, peers[i].String())
						return
					}
				}
			}
		})
	}
	wg.Wait()
	n := 0
	sharedPeers.Range(func(any, any) bool { n++; return true })
	if n > textCacheSize {
		t.Fatalf("the shared cache grew past %d: %d", textCacheSize, n)
	}
}
