package state

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
)

func TestMain(m *testing.M) {
	// The durability test re-runs this binary as a writer that it kills.
	if dir := os.Getenv(writerEnv); dir != "" {
		os.Exit(runWriter(dir, os.Getenv(writerModeEnv)))
	}
	os.Exit(m.Run())
}

func openTestDB(t testing.TB, dir string) *DB {
	t.Helper()
	db, err := Open(dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// newTestDB opens a database in a fresh directory, closed at the end of
// the test.
func newTestDB(t testing.TB) *DB {
	t.Helper()
	db := openTestDB(t, t.TempDir())
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func digest(i int, salt string) []byte {
	h := sha256.Sum256(binary.AppendVarint([]byte(salt), int64(i)))
	return h[:]
}

// testCid returns a distinct CIDv1 (raw, sha2-256) for every i.
func testCid(i int) api.Cid {
	c, err := cid.Cast(append([]byte{0x01, 0x55, 0x12, 0x20}, digest(i, "cid")...))
	if err != nil {
		panic(err)
	}
	return api.NewCid(c)
}

// testPeer returns a distinct valid peer ID for every i.
func testPeer(i int) peer.ID {
	return peer.ID(append([]byte{0x12, 0x20}, digest(i, "peer")...))
}

// testPin returns a data pin for testCid(i) with every stored field set,
// in the form the state returns it.
func testPin(i int) api.Pin {
	origin, err := api.NewMultiaddr(fmt.Sprintf("/ip4/10.0.0.%d/tcp/4001", i%250+1))
	if err != nil {
		panic(err)
	}
	ref := testCid(i + 1_000_000)
	p := api.PinWithOpts(testCid(i), api.PinOptions{
		ReplicationFactorMin: 2,
		ReplicationFactorMax: 3,
		Name:                 fmt.Sprintf("pin-%d", i),
		ShardSize:            1 << 20,
		ExpireAt:             time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC),
		Metadata:             map[string]string{"owner": "tests", "n": fmt.Sprint(i)},
		Origins:              []api.Multiaddr{origin},
	})
	p.Allocations = []peer.ID{testPeer(i), testPeer(i + 1)}
	p.Reference = &ref
	p.Timestamp = time.Unix(1_700_000_000, int64(i)).UTC()
	return p
}

func mustPut(t testing.TB, db *DB, pins ...api.Pin) {
	t.Helper()
	if err := db.PutMany(pins); err != nil {
		t.Fatal(err)
	}
}
