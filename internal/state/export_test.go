package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// referenceLines are export lines as IPFS Cluster writes them: 1.x with
// string CIDs, and older releases with {"/": ...} links.
var referenceLines = []string{
	`{"replication_factor_min":-1,"replication_factor_max":-1,"name":"website","mode":"recursive","shard_size":0,"user_allocations":null,"expire_at":"0001-01-01T00:00:00Z","metadata":{"owner":"ops"},"pin_update":null,"origins":["/ip4/192.0.2.1/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"],"cid":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG","type":"pin","allocations":[],"max_depth":-1,"reference":null,"timestamp":"2023-04-05T06:07:08.123456789+02:00"}`,
	`{"replication_factor_min":2,"replication_factor_max":3,"name":"","mode":"direct","shard_size":104857600,"user_allocations":["QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"],"expire_at":"2030-01-01T00:00:00Z","metadata":null,"pin_update":null,"origins":[],"cid":{"/":"bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"},"type":"meta-pin","allocations":["QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"],"max_depth":0,"reference":{"/":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"},"timestamp":"2019-01-01T00:00:00Z"}`,
}

// decodeAll runs DecodeExport over input and collects the pins.
func decodeAll(input string) ([]api.Pin, error) {
	var pins []api.Pin
	err := DecodeExport(strings.NewReader(input), func(p api.Pin) error {
		pins = append(pins, p)
		return nil
	})
	return pins, err
}

func TestDecodeReferenceExport(t *testing.T) {
	pins, err := decodeAll(strings.Join(referenceLines, "\n") + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(pins) != 2 {
		t.Fatalf("decoded %d pins, want 2", len(pins))
	}
	p := pins[0]
	if p.Cid.String() != "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG" || p.Name != "website" ||
		p.Type != api.DataType || p.MaxDepth != -1 || p.Mode != api.PinModeRecursive ||
		p.ReplicationFactorMin != -1 || p.Metadata["owner"] != "ops" || len(p.Origins) != 1 ||
		!p.Timestamp.Equal(time.Date(2023, 4, 5, 4, 7, 8, 123456789, time.UTC)) || p.Reference != nil {
		t.Fatalf("first line decoded as %+v", p)
	}
	p = pins[1]
	wantPeer, err := peer.Decode("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
	if err != nil {
		t.Fatal(err)
	}
	if p.Cid.String() != "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy" || p.Type != api.MetaType ||
		p.Mode != api.PinModeDirect || p.MaxDepth != 0 || p.ShardSize != 100<<20 ||
		len(p.Allocations) != 1 || p.Allocations[0] != wantPeer ||
		p.Reference == nil || p.Reference.String() != "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG" {
		t.Fatalf("second line decoded as %+v", p)
	}
}

func TestDecodeExportNormalises(t *testing.T) {
	pins, err := decodeAll(
		`{"cid":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG","type":"pin"}` + "\r\n" +
			"\n   \n" +
			`{"cid":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG","type":"pin","mode":"direct","reference":""}` + "\n" +
			`{"cid":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG","type":"shard-pin","mode":"direct","max_depth":2}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(pins) != 3 {
		t.Fatalf("decoded %d pins, want 3", len(pins))
	}
	if pins[0].MaxDepth != -1 || pins[0].Mode != api.PinModeRecursive {
		t.Errorf("missing mode and max_depth: %d %s, want recursive", pins[0].MaxDepth, pins[0].Mode)
	}
	if pins[1].MaxDepth != 0 || pins[1].Mode != api.PinModeDirect || pins[1].Reference != nil {
		t.Errorf("direct without max_depth: %d %s %v", pins[1].MaxDepth, pins[1].Mode, pins[1].Reference)
	}
	if pins[2].MaxDepth != 2 || pins[2].Mode != api.PinModeRecursive {
		t.Errorf("max_depth 2 with mode direct: %d %s, max_depth wins", pins[2].MaxDepth, pins[2].Mode)
	}
}

func TestDecodeExportErrors(t *testing.T) {
	valid := referenceLines[0]
	cid := `"cid":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"`
	for _, tc := range []struct {
		name, input, want string
	}{
		{"truncated json", valid + "\n" + `{"cid":`, "line 2: unexpected end of JSON input"},
		{"counts blank lines", "\n\n" + `{"cid": 12}`, "line 3: cid: expected a string"},
		{"not an object", `[1,2]`, "line 1: want one JSON object per pin, one after the other (as state export writes them), got a JSON array"},
		{"wrong field type", `{` + cid + `,"type":"pin","name":5}`, `line 1: "name": invalid value: a JSON number`},
		{"null", `null`, "line 1: pin has no cid"},
		{"no cid", `{"type":"pin"}`, "line 1: pin has no cid"},
		{"empty cid", `{"cid":"","type":"pin"}`, "line 1: pin has no cid"},
		{"bad cid", `{"cid":"QmNotACid","type":"pin"}`, "line 1: error decoding Cid"},
		{"bad link", `{"cid":{"/":5},"type":"pin"}`, "line 1: cid: expected a string"},
		{"no type", `{` + cid + `}`, `line 1: pin has no "type"`},
		{"unknown type", `{` + cid + `,"type":"pinned"}`, `line 1: invalid pin type "pinned"`},
		{"composite type", `{` + cid + `,"type":"all"}`, `line 1: invalid pin type "all"`},
		{"bad mode", `{` + cid + `,"type":"pin","mode":"sideways"}`, `line 1: invalid pin mode "sideways"`},
		{"bad peer", `{` + cid + `,"type":"pin","allocations":["nobody"]}`, "line 1: failed to parse peer ID"},
		{"bad origin", `{` + cid + `,"type":"pin","origins":["/nowhere"]}`, "line 1: invalid multiaddress"},
		{"bad time", `{` + cid + `,"type":"pin","timestamp":"yesterday"}`, "line 1: parsing time"},
		{"trailing data", `{` + cid + `,"type":"pin"} {}`, "line 1: invalid character '{' after top-level value"},
		{"too long", `{"name":"` + strings.Repeat("x", maxExportLine) + `"}`, "line 1: longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeAll(tc.input)
			if !errors.Is(err, ErrInvalidExport) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalidExport containing %q", err, tc.want)
			}
		})
	}

	stop := errors.New("stop")
	if err := DecodeExport(strings.NewReader(valid), func(api.Pin) error { return stop }); err != stop {
		t.Fatalf("fn error: got %v, want it returned as is", err)
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	src := newTestDB(t)
	for i := range 100 {
		p := testPin(i)
		if i%3 == 0 {
			p.Type = api.ShardType
			p.MaxDepth = 0
			p.Mode = api.PinModeDirect
			p.Metadata = nil
			p.Reference = nil
		}
		mustPut(t, src, p)
	}
	var exported bytes.Buffer
	if err := src.Export(t.Context(), &exported, nil); err != nil {
		t.Fatal(err)
	}

	// Each line is exactly json.Marshal of the stored pin.
	var want bytes.Buffer
	if err := src.List(t.Context(), func(p api.Pin) error {
		b, err := json.Marshal(p)
		want.Write(b)
		want.WriteByte('\n')
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(exported.Bytes(), want.Bytes()) {
		t.Fatal("export lines differ from json.Marshal of the pins")
	}

	dst := newTestDB(t)
	mustPut(t, dst, testPin(5000)) // import replaces the state
	if err := dst.Clear(t.Context()); err != nil {
		t.Fatal(err)
	}
	var batch []api.Pin
	err := DecodeExport(bytes.NewReader(exported.Bytes()), func(p api.Pin) error {
		if batch = append(batch, p); len(batch) == 32 {
			err := dst.PutMany(batch)
			batch = batch[:0]
			return err
		}
		return nil
	})
	if err == nil {
		err = dst.PutMany(batch)
	}
	if err != nil {
		t.Fatal(err)
	}
	if dst.Len() != 100 {
		t.Fatalf("imported %d pins, want 100", dst.Len())
	}
	for i := range 100 {
		a, errA := src.Get(testCid(i))
		b, errB := dst.Get(testCid(i))
		if errA != nil || errB != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("pin %d after import:\n got %+v (%v)\nwant %+v (%v)", i, b, errB, a, errA)
		}
	}
	var again bytes.Buffer
	if err := dst.Export(t.Context(), &again, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), exported.Bytes()) {
		t.Fatal("re-export differs")
	}
}

// TestExportWithPending exports a state with changes not yet applied: a
// pin replaced, one removed and one only pending.
func TestExportWithPending(t *testing.T) {
	db := newTestDB(t)
	for i := range 3 {
		mustPut(t, db, testPin(i))
	}
	renamed := testPin(1)
	renamed.Name = "renamed"
	added := testPin(7)
	pending := map[api.Cid]*api.Pin{renamed.Cid: &renamed, testCid(2): nil, added.Cid: &added}
	var buf bytes.Buffer
	if err := db.Export(t.Context(), &buf, pending); err != nil {
		t.Fatal(err)
	}
	var got []api.Pin
	if err := DecodeExport(&buf, func(p api.Pin) error { got = append(got, p); return nil }); err != nil {
		t.Fatal(err)
	}
	stored0, _ := db.Get(testCid(0))
	want := map[api.Cid]string{stored0.Cid: stored0.Name, renamed.Cid: "renamed", added.Cid: added.Name}
	if len(got) != len(want) || got[len(got)-1].Cid != added.Cid {
		t.Fatalf("exported %d pins, want %d with the pending one last", len(got), len(want))
	}
	for _, p := range got {
		if name, ok := want[p.Cid]; !ok || p.Name != name {
			t.Fatalf("exported %s %q, want only %v", p.Cid, p.Name, want)
		}
	}
}

// storedForm is p as the binary pin encoding gives it back.
func storedForm(p api.Pin) api.Pin {
	p.UserAllocations = nil
	p.ExpireAt = storedTime(p.ExpireAt)
	p.Timestamp = storedTime(p.Timestamp)
	if len(p.Metadata) == 0 {
		p.Metadata = nil
	}
	if len(p.Allocations) == 0 {
		p.Allocations = nil
	}
	var origins []api.Multiaddr
	for _, o := range p.Origins {
		if o.Multiaddr != nil && len(o.Bytes()) > 0 {
			origins = append(origins, o)
		}
	}
	p.Origins = origins
	return p
}

// storedTime is t in UTC (the zero time stays zero).
func storedTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// FuzzDecodeExport checks that DecodeExport never panics, fails only with
// ErrInvalidExport, and that every pin it accepts is stored and exported
// faithfully.
func FuzzDecodeExport(f *testing.F) {
	f.Add(strings.Join(referenceLines, "\n"))
	var b bytes.Buffer
	for i := range 3 {
		line, err := json.Marshal(testPin(i))
		if err != nil {
			f.Fatal(err)
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	f.Add(b.String())
	f.Add(`{"cid":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG","type":"clusterdag-pin","max_depth":7,"pin_update":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"}`)
	f.Add(`{"cid":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG","type":"pin","timestamp":"1970-01-01T00:00:00Z","origins":[""]}`)
	f.Add(`{"cid":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG","type":"pin","allocations":[null],"metadata":{"a":null},"mode":null,"max_depth":null}`)
	f.Add(`{"cid":{"/":"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"},"type":"pin","reference":{"/":""},"expire_at":"2262-04-11T23:47:16.854775807Z"}`)
	f.Add("\n\n{\"cid\":")
	f.Fuzz(func(t *testing.T, input string) {
		err := DecodeExport(strings.NewReader(input), func(p api.Pin) error {
			if !p.Cid.Defined() {
				t.Fatal("accepted a pin without cid")
			}
			enc, err := p.AppendBinary(nil)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			var stored api.Pin
			if err := stored.UnmarshalBinary(enc); err != nil {
				t.Fatalf("accepted pin does not decode once stored: %v", err)
			}
			if want := storedForm(p); !reflect.DeepEqual(stored, want) {
				t.Fatalf("stored pin differs:\n got %+v\nwant %+v", stored, want)
			}
			line, err := json.Marshal(stored)
			if err != nil {
				t.Fatalf("export: %v", err)
			}
			back, err := decodeAll(string(line))
			if err != nil || len(back) != 1 {
				t.Fatalf("export %s does not import back: %v", line, err)
			}
			if got := storedForm(back[0]); !reflect.DeepEqual(got, stored) {
				t.Fatalf("export does not import back:\n got %+v\nwant %+v", got, stored)
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrInvalidExport) {
			t.Fatal(err)
		}
	})
}

// TestDecodePrettyPrintedExport reads the reference's export lines as jq
// prints them, one key per line: the same pins, and an error names the
// line where the broken pin starts.
func TestDecodePrettyPrintedExport(t *testing.T) {
	want, err := decodeAll(strings.Join(referenceLines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	var pretty strings.Builder
	for _, line := range referenceLines {
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatal(err)
		}
		b, _ := json.MarshalIndent(v, "", "  ")
		pretty.Write(b)
		pretty.WriteString("\n")
	}
	got, err := decodeAll(pretty.String())
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("pretty-printed export: %d pins (%v), want the %d of the one-line export", len(got), err, len(want))
	}
	lines := strings.Count(pretty.String(), "\n")
	_, err = decodeAll(pretty.String() + "{\n  \"cid\": 12\n}\n")
	if !errors.Is(err, ErrInvalidExport) || !strings.Contains(err.Error(), fmt.Sprintf("line %d:", lines+1)) {
		t.Fatalf("broken pretty-printed pin: %v, want an error at line %d", err, lines+1)
	}
	if _, err := decodeAll(pretty.String() + "{\n  \"cid\": \"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG\",\n"); !errors.Is(err, ErrInvalidExport) {
		t.Fatalf("export cut inside a pin: %v", err)
	}
}
