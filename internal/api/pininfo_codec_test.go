package api

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

func TestPinInfoBinaryRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	peers := testPeers(t, 4)
	for i := range 500 {
		p := randomPin(r, peers)
		o, _ := NewMultiaddr("/ip4/127.0.0.1/tcp/4001")
		pi := PinInfo{
			Cid: p.Cid, Name: p.Name, Peer: peers[i%4], Allocations: p.Allocations, Origins: p.Origins,
			Created: p.Timestamp, Metadata: p.Metadata,
			PinInfoShort: PinInfoShort{
				PeerName: p.Name, IPFS: peers[(i+1)%4], IPFSAddresses: []Multiaddr{o},
				Status: TrackerStatusAll[i%len(TrackerStatusAll)], TS: time.Unix(int64(i), 7).UTC(),
				Error: p.Name, AttemptCount: i, PriorityPin: i%2 == 0,
			},
		}
		b, err := pi.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		var got PinInfo
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("decode %d: %v", i, err)
		}
		want := pi
		want.Created = want.Created.UTC()
		if want.Created.IsZero() {
			want.Created = time.Time{}
		}
		if len(want.Allocations) == 0 {
			want.Allocations = nil
		}
		if len(want.Metadata) == 0 {
			want.Metadata = nil
		}
		want.Origins = nil
		for _, o := range pi.Origins {
			if o.Multiaddr != nil {
				want.Origins = append(want.Origins, o)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

func FuzzPinInfoUnmarshalBinary(f *testing.F) {
	pi := PinInfo{Name: "x", PinInfoShort: PinInfoShort{Status: TrackerStatusPinned, Error: "e"}}
	b, _ := pi.AppendBinary(nil)
	f.Add(b)
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var got PinInfo
		if err := got.UnmarshalBinary(data); err != nil {
			return
		}
		again, err := got.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		var back PinInfo
		if err := back.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoded pin info does not decode: %v", err)
		}
	})
}
