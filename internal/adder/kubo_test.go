package adder_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/ipfsconn"
)

func freshBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestIntoKubo adds fresh content (kubo has never seen it) through a
// stream into a real kubo, then pins the root there. The daemon is
// offline, so the pin succeeds only if every block arrived. The root must
// also be the CID kubo computes for the same files.
func TestIntoKubo(t *testing.T) {
	d := sharedKubo(t)
	conn, err := ipfsconn.New(ipfsconn.Config{NodeMultiaddress: d.APIAddr}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	for _, c := range []struct {
		name string
		open func(context.Context) *ipfsconn.BlockStream
		opts adder.Options
		args []string
	}{
		{"dag/import", conn.BlockStream, adder.Options{Recursive: true, Wrap: true}, []string{"-r", "-w"}},
		// block/put sends every block as raw: pinning checks that kubo
		// finds the dag-pb ones by multihash all the same.
		{"block/put cidv1", conn.BlockPutStream, adder.Options{Recursive: true, CidVersion: 1}, []string{"-r", "--cid-version=1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "content")
			writeFile(t, filepath.Join(dir, "big.bin"), freshBytes(t, 20<<20))
			// A HAMT-sharded directory: 2000 x (100-byte name + CID) > 256KiB.
			for i := range 2000 {
				writeFile(t, filepath.Join(dir, "many", fmt.Sprintf("%0100d", i)), freshBytes(t, 64))
			}
			writeFile(t, filepath.Join(dir, "empty"), nil)

			ctx := ctxTimeout(t, 2*time.Minute)
			stream := c.open(ctx)
			a, err := adder.New(c.opts, stream, nil)
			if err != nil {
				t.Fatal(err)
			}
			root, err := a.AddPaths(ctx, dir)
			if err != nil {
				stream.CloseWithError(err)
				t.Fatal(err)
			}
			if err := stream.Close(); err != nil {
				t.Fatal(err)
			}
			if err := conn.Pin(ctx, api.PinWithOpts(root, api.PinOptions{Mode: api.PinModeRecursive}), nil); err != nil {
				t.Fatalf("pinning %s in kubo: %v", root, err)
			}
			want := kuboAdd(t, nil, append(c.args, dir)...)
			if w := want[len(want)-1].Cid; root.String() != w {
				t.Fatalf("root %s, kubo's %s", root, w)
			}
		})
	}
}
