package adder_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/boxo/files"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
)

// TestBlockOrder checks the BlockSink contract on a tree with a HAMT, a
// trickle file and a symlink: every block arrives after the blocks it
// links to, the root last, and nothing is missing.
func TestBlockOrder(t *testing.T) {
	big := randomBytes(14, 5<<20)
	tree := func() files.Directory { // iterators are single use: a new tree per add
		var many []files.DirEntry
		for i := range 6000 {
			many = append(many, files.FileEntry(fmt.Sprintf("entry-%05d", i), files.NewBytesFile([]byte(fmt.Sprint(i)))))
		}
		return files.NewSliceDirectory([]files.DirEntry{
			files.FileEntry("t", files.NewSliceDirectory([]files.DirEntry{
				files.FileEntry("big", files.NewBytesFile(big)),
				files.FileEntry("many", files.NewSliceDirectory(many)),
				files.FileEntry("link", files.NewLinkFile("big", nil)),
			})),
		})
	}
	for _, opts := range []adder.Options{{}, {CidVersion: 1, Layout: adder.LayoutTrickle, Chunker: "size-65536"}} {
		res := run(t, opts, func(ctx context.Context, a *adder.Adder) (api.Cid, error) { return a.AddFiles(ctx, tree()) })
		seen := map[cid.Cid]bool{}
		shards := 0
		for _, b := range res.sink.Blocks() {
			if b.Cid().Prefix().Codec == cid.DagProtobuf {
				nd, err := merkledag.DecodeProtobuf(b.RawData())
				if err != nil {
					t.Fatal(err)
				}
				for _, l := range nd.Links() {
					if !seen[l.Cid] {
						t.Fatalf("block %s came before its child %s", b.Cid(), l.Cid)
					}
				}
				if fsn, err := unixfs.FSNodeFromBytes(nd.Data()); err == nil && fsn.Type() == unixfs.THAMTShard {
					shards++
				}
			}
			seen[b.Cid()] = true
		}
		blocks := res.sink.Blocks()
		if last := blocks[len(blocks)-1].Cid().String(); last != res.root {
			t.Fatalf("last block %s, root %s", last, res.root)
		}
		if shards < 2 {
			t.Fatalf("%d HAMT shard blocks, want the 6000-entry directory sharded", shards)
		}
	}
}

// TestProgress reports the bytes read of each file every 256KiB and at
// its end, before the file's own event.
func TestProgress(t *testing.T) {
	var events []api.AddedOutput
	a, err := adder.New(adder.Options{Progress: true, Wrap: true}, adder.DiscardSink{}, func(o api.AddedOutput) { events = append(events, o) })
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.AddFiles(ctxTimeout(t, 10*time.Second), files.NewSliceDirectory([]files.DirEntry{
		files.FileEntry("a", files.NewBytesFile(randomBytes(15, 600<<10))),
		files.FileEntry("empty", files.NewBytesFile(nil)),
	}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		if e.Cid.Defined() {
			got = append(got, fmt.Sprintf("%s added", e.Name))
		} else {
			got = append(got, fmt.Sprintf("%s %d", e.Name, e.Bytes))
		}
	}
	want := []string{"a 262144", "a 524288", "a 614400", "a added", "empty 0", "empty added", " added"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}
