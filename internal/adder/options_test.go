package adder_test

import (
	"bytes"
	"errors"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	mh "github.com/multiformats/go-multihash"

	"ipfs-cluster/internal/adder"
)

func TestParseQuery(t *testing.T) {
	for _, c := range []struct {
		query string
		want  adder.Options
	}{
		{"", adder.Options{}},
		// What ipfs-cluster-ctl 1.1.6 sends for `add -r -w --cid-version 1`,
		// pin options and all.
		{"replication-min=0&replication-max=0&name=&mode=recursive&shard-size=0&user-allocations=&local=false" +
			"&recursive=true&layout=&chunker=size-262144&raw-leaves=true&hidden=false&wrap-with-directory=true" +
			"&shard=false&progress=true&cid-version=1&hash=sha2-256&stream-channels=true&nocopy=false&format=unixfs&no-pin=false",
			adder.Options{Recursive: true, Wrap: true, Chunker: "size-262144", RawLeaves: true, RawLeavesSet: true,
				Progress: true, CidVersion: 1, CidVersionSet: true, HashFunction: "sha2-256"}},
		{"hidden=1&layout=trickle&chunker=rabin-16-32-64", adder.Options{Hidden: true, Layout: "trickle", Chunker: "rabin-16-32-64"}},
		{"trickle=true", adder.Options{Layout: "trickle"}},
		{"trickle=false&layout=balanced", adder.Options{Layout: "balanced"}},
		{"hash=SHA3-512", adder.Options{HashFunction: "SHA3-512"}},
		{"hash=blake3&raw-leaves=false", adder.Options{HashFunction: "blake3", RawLeavesSet: true}},
		{"chunker=buzhash&max-file-links=10&max-directory-links=100&max-hamt-fanout=64",
			adder.Options{Chunker: "buzhash", MaxFileLinks: 10, MaxDirectoryLinks: 100, MaxHAMTFanout: 64}},
		{"chunker=rabin-min:16-avg:32-max:64", adder.Options{Chunker: "rabin-min:16-avg:32-max:64"}},
		{"chunker=size-1048576", adder.Options{Chunker: "size-1048576"}},
	} {
		q, err := url.ParseQuery(c.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := adder.ParseQuery(q)
		if err != nil {
			t.Errorf("ParseQuery(%q): %v", c.query, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseQuery(%q) = %+v, want %+v", c.query, got, c.want)
		}
		// Query round-trips to options building the same DAG.
		back, err := adder.ParseQuery(got.Query())
		if err != nil || back.Query().Encode() != got.Query().Encode() {
			t.Errorf("ParseQuery(%q) = %+v, %v; want options equivalent to %+v", got.Query().Encode(), back, err, got)
		}
	}
}

// TestParseQueryErrors: every refusal names the parameter and its value
// and wraps ErrInvalidOption, so the API can answer 400 before reading
// any data.
func TestParseQueryErrors(t *testing.T) {
	for _, c := range []struct{ query, param, value string }{
		{"hash=sha2-384", "hash", "sha2-384"},       // not a name kubo knows
		{"hash=md5", "hash", "md5"},                 // known, refused as insecure
		{"hash=blake2b-128", "hash", "blake2b-128"}, // digest too short
		{"hash=murmur3-x64-64", "hash", "murmur3-x64-64"},
		{"hash=nope", "hash", "nope"},
		{"cid-version=2", "cid-version", "2"},
		{"cid-version=-1", "cid-version", "-1"},
		{"cid-version=x", "cid-version", "x"},
		{"cid-version=0&hash=sha3-512", "cid-version", "0"},
		{"chunker=size-0", "chunker", "size-0"},
		{"chunker=size-1048577", "chunker", "size-1048577"},
		{"chunker=size-", "chunker", "size-"},
		{"chunker=size-10-20", "chunker", "size-10-20"},
		{"chunker=fixed", "chunker", "fixed"},
		{"chunker=rabin-8-32-64", "chunker", "rabin-8-32-64"},
		{"chunker=rabin-64-32-128", "chunker", "rabin-64-32-128"},
		{"chunker=rabin-16-64-64", "chunker", "rabin-16-64-64"},
		{"chunker=rabin-16-32-2000000", "chunker", "rabin-16-32-2000000"},
		{"chunker=rabin-700000", "chunker", "rabin-700000"},
		{"chunker=rabin-avg:16-min:32-max:64", "chunker", "rabin-avg:16-min:32-max:64"},
		{"chunker=rabin-1-2", "chunker", "rabin-1-2"},
		{"chunker=buzhash-1", "chunker", "buzhash-1"},
		{"layout=flat", "layout", "flat"},
		{"layout=balanced&trickle=true", "trickle", "true"},
		{"trickle=maybe", "trickle", "maybe"},
		{"raw-leaves=yes", "raw-leaves", "yes"},
		{"recursive=2", "recursive", "2"},
		{"max-file-links=1", "max-file-links", "1"},
		{"max-directory-links=-5", "max-directory-links", "-5"},
		{"max-hamt-fanout=100", "max-hamt-fanout", "100"},
		{"max-hamt-fanout=2048", "max-hamt-fanout", "2048"},
		{"max-hamt-fanout=4", "max-hamt-fanout", "4"},
	} {
		q, err := url.ParseQuery(c.query)
		if err != nil {
			t.Fatal(err)
		}
		_, err = adder.ParseQuery(q)
		if !errors.Is(err, adder.ErrInvalidOption) {
			t.Errorf("ParseQuery(%q) = %v, want ErrInvalidOption", c.query, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.param) || !strings.Contains(msg, `"`+c.value+`"`) {
			t.Errorf("ParseQuery(%q) = %q, want it to name %s and %q", c.query, msg, c.param, c.value)
		}
	}
}

// TestHashFunctions checks every multihash name against kubo: kubo's add
// accepts it exactly when we do, and then both compute the same CID.
func TestHashFunctions(t *testing.T) {
	// Small enough to fit in one request kubo may refuse unread, cut in
	// several leaves under a dag-pb root.
	data := randomBytes(6, 300)
	file := writeFile(t, filepath.Join(t.TempDir(), "f"), data)
	accepted := 0
	for name := range mh.Names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, kerr := kuboAddRPC(t, "chunker=size-64&hash="+url.QueryEscape(name), "f", data)
			opts := adder.Options{HashFunction: name, Chunker: "size-64"}
			a, err := adder.New(opts, adder.DiscardSink{}, nil)
			switch {
			case kerr != nil && err == nil:
				// Some hashes fail by block (identity over 128 bytes).
				if _, addErr := a.AddReader(t.Context(), "f", bytes.NewReader(data)); !errors.Is(addErr, adder.ErrInvalidInput) {
					t.Fatalf("kubo refuses hash %s (%v), we add with it (%v)", name, kerr, addErr)
				}
				return
			case kerr == nil && err != nil:
				t.Fatalf("kubo accepts hash %s, we refuse it: %v", name, err)
			case err != nil:
				if !errors.Is(err, adder.ErrInvalidOption) || !strings.Contains(err.Error(), name) {
					t.Fatalf("refusal %q does not wrap ErrInvalidOption or name the hash", err)
				}
				return
			}
			got := run(t, opts, addPaths(file))
			if got.root != strings.TrimSpace(out) {
				t.Fatalf("hash %s: root %s, kubo's %s", name, got.root, out)
			}
		})
		accepted++
	}
	if accepted < 15 {
		t.Fatalf("only %d hash names tried", accepted)
	}
}

// TestQueryEffective: the query states the CID version and leaves in
// effect, which a server without kubo's implications needs.
func TestQueryEffective(t *testing.T) {
	for _, c := range []struct {
		opts adder.Options
		want string
	}{
		{adder.Options{}, ""},
		{adder.Options{HashFunction: "sha3-512"}, "cid-version=1&hash=sha3-512&raw-leaves=true"},
		{adder.Options{CidVersion: 1}, "cid-version=1&raw-leaves=true"},
		{adder.Options{CidVersion: 1, RawLeavesSet: true}, "cid-version=1&raw-leaves=false"},
		{adder.Options{CidVersionSet: true, RawLeaves: true, Wrap: true}, "cid-version=0&raw-leaves=true&wrap-with-directory=true"},
	} {
		if got := c.opts.Query().Encode(); got != c.want {
			t.Errorf("%+v.Query() = %q, want %q", c.opts, got, c.want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := adder.New(adder.Options{Chunker: "nope"}, adder.DiscardSink{}, nil); !errors.Is(err, adder.ErrInvalidOption) {
		t.Fatalf("New with a bad chunker = %v, want ErrInvalidOption", err)
	}
	if _, err := adder.New(adder.Options{}, nil, nil); err == nil {
		t.Fatal("New accepted a nil sink")
	}
}
