package cluster_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/adder"
	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/cluster"
	"ipfs-cluster/internal/daemon/daemontest"
)

// BenchmarkAddToRemotePeer measures an add whose only destination is
// another peer: the DAG is built on peer 0, its blocks cross the libp2p
// blocks stream, and peer 1 streams them into its kubo. MiB/s is the
// add's throughput; both peers run in this process, so a CPU profile
// shows the sending and the receiving side.
func BenchmarkAddToRemotePeer(b *testing.B) {
	const size = 64 << 20
	peers := daemontest.StartCluster(b, 2, nil)
	data := make([]byte, size)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		rand.Read(data)
		b.StartTimer()
		params := cluster.AddParams{Pin: api.PinOptions{
			ReplicationFactorMin: 1, ReplicationFactorMax: 1,
			UserAllocations: []peer.ID{peers[1].Identity.ID},
		}}
		res, err := peers[0].Cluster.Add(b.Context(), params, func(ctx context.Context, sink adder.BlockSink) (api.Cid, error) {
			a, err := adder.New(adder.Options{}, sink, nil)
			if err != nil {
				return api.Cid{}, err
			}
			return a.AddReader(ctx, "random.bin", bytes.NewReader(data))
		})
		if err != nil || len(res.Failed) != 0 || len(res.Pin.Allocations) != 1 || res.Pin.Allocations[0] != peers[1].Identity.ID {
			b.Fatalf("add: %+v, %v", res, err)
		}
	}
}
