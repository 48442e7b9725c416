package cluster

import (
	"context"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/p2p"
)

const rpcConnections = "Cluster.Connections"

// connections is what one peer reports for the connectivity graph.
type connections struct {
	ClusterPeers []peer.ID `json:"cluster_peers"`
	IPFSID       peer.ID   `json:"ipfs_id"`
	IPFSPeers    []peer.ID `json:"ipfs_peers"`
}

// localConnections lists the cluster peers this host is connected to, and
// this peer's kubo and the daemons kubo is connected to.
func (c *Cluster) localConnections(ctx context.Context) connections {
	members := c.peerset()
	var out connections
	for _, p := range c.host.Network().Peers() {
		if slices.Contains(members, p) {
			out.ClusterPeers = append(out.ClusterPeers, p)
		}
	}
	slices.Sort(out.ClusterPeers)
	out.IPFSID = c.kuboID().ID
	if peers, err := c.ipfs.SwarmPeers(ctx); err == nil {
		out.IPFSPeers = peers
	}
	return out
}

// ConnectGraph asks every peer of the peerset for its connections (in
// parallel); a peer that does not answer has no links.
func (c *Cluster) ConnectGraph(ctx context.Context) api.ConnectGraph {
	g := api.ConnectGraph{
		ClusterID:         c.cfg.Peer,
		IDtoPeername:      map[string]string{},
		IPFSLinks:         map[string][]peer.ID{},
		ClusterLinks:      map[string][]peer.ID{},
		ClusterTrustLinks: map[string]bool{},
		ClustertoIPFS:     map[string]peer.ID{},
	}
	for p, pg := range c.peerNames() {
		g.IDtoPeername[p.String()] = pg.PeerName
	}
	for _, r := range p2p.CallAll[connections](ctx, c.rpc, c.peerset(), rpcConnections, struct{}{}, peerCallTimeout) {
		id := r.Peer.String()
		g.ClusterTrustLinks[id] = c.isTrusted(r.Peer)
		if r.Err != nil {
			g.ClusterLinks[id] = []peer.ID{}
			continue
		}
		g.ClusterLinks[id] = r.Value.ClusterPeers
		if r.Value.IPFSID != "" {
			g.ClustertoIPFS[id] = r.Value.IPFSID
			g.IPFSLinks[r.Value.IPFSID.String()] = r.Value.IPFSPeers
		}
	}
	return g
}

// BandwidthByProtocol is the traffic of this peer's libp2p host since it
// started, per protocol.
func (c *Cluster) BandwidthByProtocol() api.BandwidthByProtocol {
	bw := api.BandwidthByProtocol{}
	if c.cfg.Bandwidth == nil {
		return bw
	}
	for p, st := range c.cfg.Bandwidth.GetBandwidthByProtocol() {
		bw[string(p)] = api.Bandwidth{TotalIn: st.TotalIn, TotalOut: st.TotalOut, RateIn: st.RateIn, RateOut: st.RateOut}
	}
	return bw
}
