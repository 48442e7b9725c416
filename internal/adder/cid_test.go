package adder_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
)

// fixture is the content the CID tests add, written once per test.
type fixture struct {
	small, big, mid, empty, tree, emptyDir, link, loop, dangling string
}

func makeFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	f := fixture{
		small:    writeFile(t, filepath.Join(dir, "small.txt"), []byte("hello world\n")),
		big:      writeFile(t, filepath.Join(dir, "big.bin"), randomBytes(1, 20<<20)),
		mid:      writeFile(t, filepath.Join(dir, "mid.bin"), randomBytes(2, 2<<20+12345)),
		empty:    writeFile(t, filepath.Join(dir, "empty"), nil),
		tree:     filepath.Join(dir, "tree"),
		emptyDir: filepath.Join(dir, "emptydir"),
		link:     filepath.Join(dir, "link"),
		loop:     filepath.Join(dir, "loop1"),
		dangling: filepath.Join(dir, "dangling"),
	}
	for name, content := range map[string][]byte{
		"a.txt":              []byte("a\n"),
		"b.bin":              randomBytes(3, 600<<10),
		"empty":              nil,
		".hidden":            []byte("hidden\n"),
		".hiddendir/x.txt":   []byte("x\n"),
		"sub/c.txt":          []byte("c\n"),
		"sub/deeper/d.bin":   randomBytes(4, 300<<10),
		"sub/.also-hidden":   []byte("h\n"),
		"z/with space ü.txt": []byte("unicode\n"),
	} {
		writeFile(t, filepath.Join(f.tree, name), content)
	}
	for _, d := range []string{f.emptyDir, filepath.Join(f.tree, "emptydir")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		f.link:                           "small.txt",
		f.loop:                           "loop2",
		filepath.Join(dir, "loop2"):      "loop1",
		f.dangling:                       "does/not/exist",
		filepath.Join(f.tree, "link"):    "a.txt",
		filepath.Join(f.tree, "uplink"):  "..",
		filepath.Join(f.tree, "selfref"): "selfref",
	}
	for p, target := range links {
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// TestSameCIDsAsKubo adds the same content with the same options as
// `ipfs add --only-hash` and expects the same root and the same per-entry
// CIDs, in the same order, both from paths on disk and through the
// multipart body ipfs-cluster-ctl sends.
func TestSameCIDsAsKubo(t *testing.T) {
	f := makeFixture(t)
	cases := []struct {
		name  string
		args  []string
		opts  adder.Options
		paths []string
	}{
		{"small file", nil, adder.Options{}, []string{f.small}},
		{"20MB file", nil, adder.Options{}, []string{f.big}},
		{"wrap", []string{"-w"}, adder.Options{Wrap: true}, []string{f.small}},
		{"wrap several", []string{"-w"}, adder.Options{Wrap: true}, []string{f.empty, f.mid, f.small}},
		{"raw leaves", []string{"--raw-leaves"}, adder.Options{RawLeaves: true}, []string{f.mid}},
		{"trickle", []string{"--trickle", "--chunker=size-4096"}, adder.Options{Layout: adder.LayoutTrickle, Chunker: "size-4096"}, []string{f.mid}},
		{"trickle 20MB", []string{"--trickle"}, adder.Options{Layout: adder.LayoutTrickle}, []string{f.big}},
		{"recursive", []string{"-r"}, adder.Options{Recursive: true}, []string{f.tree}},
		{"recursive hidden", []string{"-r", "-H"}, adder.Options{Recursive: true, Hidden: true}, []string{f.tree}},
		{"recursive wrap", []string{"-r", "-w"}, adder.Options{Recursive: true, Wrap: true}, []string{f.tree}},
		{"recursive wrap several", []string{"-r", "-w"}, adder.Options{Recursive: true, Wrap: true}, []string{f.big, f.small, f.tree}},
		{"cid v1", []string{"-r", "--cid-version=1"}, adder.Options{Recursive: true, CidVersion: 1}, []string{f.tree}},
		{"cid v1 without raw leaves", []string{"-r", "--cid-version=1", "--raw-leaves=false"}, adder.Options{Recursive: true, CidVersion: 1, RawLeavesSet: true}, []string{f.tree}},
		{"sha3-512", []string{"-r", "--hash=sha3-512"}, adder.Options{Recursive: true, HashFunction: "sha3-512"}, []string{f.tree}},
		{"blake3", []string{"--hash=blake3"}, adder.Options{HashFunction: "blake3"}, []string{f.mid}},
		{"identity", []string{"--hash=identity"}, adder.Options{HashFunction: "identity"}, []string{f.small}},
		{"blake2b-256 cidv1 no raw leaves", []string{"--hash=blake2b-256", "--raw-leaves=false"}, adder.Options{HashFunction: "blake2b-256", RawLeavesSet: true}, []string{f.mid}},
		{"rabin min avg max", []string{"--chunker=rabin-16384-65536-131072"}, adder.Options{Chunker: "rabin-16384-65536-131072"}, []string{f.mid}},
		{"rabin", []string{"--chunker=rabin"}, adder.Options{Chunker: "rabin"}, []string{f.big}},
		{"rabin avg", []string{"--chunker=rabin-65536"}, adder.Options{Chunker: "rabin-65536"}, []string{f.mid}},
		{"buzhash", []string{"--chunker=buzhash"}, adder.Options{Chunker: "buzhash"}, []string{f.big}},
		{"max file links", []string{"--max-file-links=3", "--chunker=size-8192"}, adder.Options{MaxFileLinks: 3, Chunker: "size-8192"}, []string{f.mid}},
		{"1MiB chunks", []string{"--chunker=size-1048576"}, adder.Options{Chunker: "size-1048576"}, []string{f.big}},
		{"empty file", nil, adder.Options{}, []string{f.empty}},
		{"empty file raw leaves", []string{"--raw-leaves"}, adder.Options{RawLeaves: true}, []string{f.empty}},
		{"empty dir", []string{"-r"}, adder.Options{Recursive: true}, []string{f.emptyDir}},
		{"empty dir wrapped cid v1", []string{"-r", "-w", "--cid-version=1"}, adder.Options{Recursive: true, Wrap: true, CidVersion: 1}, []string{f.emptyDir}},
		{"symlink", nil, adder.Options{}, []string{f.link}},
		{"symlink loop", nil, adder.Options{}, []string{f.loop}},
		{"dangling symlink cid v1", []string{"--cid-version=1"}, adder.Options{CidVersion: 1}, []string{f.dangling}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			want := kuboAddStored(t, append(c.args, c.paths...)...)
			sameAdds(t, "paths", run(t, c.opts, addPaths(c.paths...)), want)
			sameAdds(t, "multipart", run(t, c.opts, addMultipart(t, c.opts.Hidden, c.paths...)), want)
		})
	}
}

// TestStdin adds a reader like `ipfs add` reads stdin: unnamed (named by
// its CID), named with --stdin-name, and wrapped.
func TestStdin(t *testing.T) {
	data := randomBytes(5, 700<<10)
	for _, c := range []struct {
		name  string
		args  []string
		wrap  bool
		label string
	}{
		{"unnamed", nil, false, ""},
		{"named", []string{"--stdin-name=input.bin"}, false, "input.bin"},
		{"unnamed wrapped", []string{"-w"}, true, ""},
		{"named wrapped", []string{"-w", "--stdin-name=input.bin"}, true, "input.bin"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			want := kuboAdd(t, data, c.args...)
			got := run(t, adder.Options{Wrap: c.wrap}, func(ctx context.Context, a *adder.Adder) (api.Cid, error) {
				return a.AddReader(ctx, c.label, bytes.NewReader(data))
			})
			sameAdds(t, "reader", got, want)
		})
	}
}

// TestHAMTSharding checks the automatic sharding of large directories:
// kubo turns a directory into a HAMT once the sum of its entries' name
// and binary CID lengths reaches 256KiB. 4096 entries with 30-byte names
// and 34-byte CIDv0s make exactly 262144 bytes, which kubo v0.38.1 shards
// (later boxo versions would not); one entry fewer stays a basic
// directory. Then a 10,000-entry directory, CIDv1 (longer CIDs, so a
// larger estimate) and custom limits.
func TestHAMTSharding(t *testing.T) {
	base := t.TempDir()
	mkdir := func(name string, n int, nameFmt string) string {
		dir := filepath.Join(base, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			writeFile(t, filepath.Join(dir, fmt.Sprintf(nameFmt, i)), []byte(fmt.Sprintf("%s entry %d\n", name, i)))
		}
		return dir
	}
	atThreshold := mkdir("at", 4096, "entry-%024d")
	belowThreshold := mkdir("below", 4095, "entry-%024d")
	big := mkdir("big", 10000, "file-%05d.txt")
	custom := filepath.Join(base, "custom")
	mkdir("custom/many", 100, "n%03d")
	mkdir("custom/few", 5, "n%03d")
	// A HAMT of folders: kubo lists them in the HAMT's order.
	folders := filepath.Join(base, "folders")
	for i := range 24 {
		mkdir(fmt.Sprintf("folders/d%02d", i), 1, "f%d")
	}

	cases := []struct {
		name  string
		args  []string
		opts  adder.Options
		paths []string
	}{
		{"at threshold", []string{"-r"}, adder.Options{Recursive: true}, []string{atThreshold}},
		{"below threshold", []string{"-r"}, adder.Options{Recursive: true}, []string{belowThreshold}},
		{"10000 entries", []string{"-r"}, adder.Options{Recursive: true}, []string{big}},
		{"wrapped cid v1", []string{"-r", "-w", "--cid-version=1"}, adder.Options{Recursive: true, Wrap: true, CidVersion: 1}, []string{atThreshold}},
		{"max directory links and fanout", []string{"-r", "--max-directory-links=10", "--max-hamt-fanout=16"},
			adder.Options{Recursive: true, MaxDirectoryLinks: 10, MaxHAMTFanout: 16}, []string{custom}},
		{"sharded folder of folders", []string{"-r", "--max-directory-links=10", "--max-hamt-fanout=16"},
			adder.Options{Recursive: true, MaxDirectoryLinks: 10, MaxHAMTFanout: 16}, []string{folders}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			want := kuboAddStored(t, append(c.args, c.paths...)...)
			sameAdds(t, "paths", run(t, c.opts, addPaths(c.paths...)), want)
			sameAdds(t, "multipart", run(t, c.opts, addMultipart(t, c.opts.Hidden, c.paths...)), want)
		})
	}
}
