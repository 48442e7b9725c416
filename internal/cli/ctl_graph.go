package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/client"
)

// makeDot renders the connectivity graph as the reference's health graph
// does, byte for byte: cluster peers C<n> (the contacted one with a double
// border, trusted ones T<n>), IPFS daemons I<n>, numbered in peer ID order.
// With allIPFS, IPFS peers outside the cluster are drawn too.
func makeDot(g client.ConnectGraph, allIPFS bool) string {
	ipfsEdges := make(map[string][]peer.ID)
	for k, links := range g.IPFSLinks {
		if _, ok := ipfsEdges[k]; !ok {
			ipfsEdges[k] = nil
		}
		for _, id := range links {
			if _, ok := g.IPFSLinks[id.String()]; ok || allIPFS {
				ipfsEdges[k] = append(ipfsEdges[k], id)
			}
			if _, ok := ipfsEdges[id.String()]; allIPFS && !ok {
				ipfsEdges[id.String()] = nil
			}
		}
	}

	d := &dotWriter{clusterNodes: map[string]string{}, ipfsNodes: map[string]string{}}
	d.line("digraph cluster {")
	d.line("/* The nodes of the connectivity graph */")
	d.line("/* The cluster-service peers */")
	d.line("subgraph  {")
	d.line(`rank="min"`)
	clusterPeers := slices.Sorted(maps.Keys(g.ClusterLinks))
	for _, id := range clusterPeers {
		label := dotLabel(g.IDtoPeername[id], shortenID(id))
		switch {
		case id == g.ClusterID.String():
			d.clusterNodes[id] = fmt.Sprintf("C%d", len(d.clusterNodes))
			d.vertex(d.clusterNodes[id], label, id, "orange", "box3d", 2)
		case g.ClusterTrustLinks[id]:
			d.clusterNodes[id] = fmt.Sprintf("T%d", len(d.clusterNodes))
			d.vertex(d.clusterNodes[id], label, id, "orange", "box3d", 0)
		default:
			d.clusterNodes[id] = fmt.Sprintf("C%d", len(d.clusterNodes))
			d.vertex(d.clusterNodes[id], label, id, "darkorange3", "box3d", 0)
		}
	}
	d.line("}")
	d.line("")

	d.line("/* The ipfs peers */")
	d.line("subgraph  {")
	d.line(`rank="max"`)
	ipfsPeers := slices.Sorted(maps.Keys(ipfsEdges))
	for _, id := range ipfsPeers {
		d.ipfsNodes[id] = fmt.Sprintf("I%d", len(d.ipfsNodes))
		d.vertex(d.ipfsNodes[id], dotLabel("IPFS", shortenID(id)), id, "turquoise3", "cylinder", 0)
	}
	for _, id := range clusterPeers {
		if _, ok := g.ClustertoIPFS[id]; !ok {
			d.ipfsNodes[id] = fmt.Sprintf("I%d", len(d.ipfsNodes))
			d.vertex(d.ipfsNodes[id], dotLabel("IPFS", "Errored"), id, "firebrick1", "cylinder", 0)
		}
	}
	d.line("}")
	d.line("")

	d.line("/* Edges representing active connections in the cluster */")
	d.line("/* The connections among cluster-service peers */")
	for _, id := range clusterPeers {
		for _, to := range g.ClusterLinks[id] {
			d.edge(d.clusterNodes[id], d.clusterNodes[to.String()], "")
		}
	}
	d.line("")

	d.line("/* The connections between cluster peers and their ipfs daemons */")
	for _, id := range clusterPeers {
		if ipfsID, ok := g.ClustertoIPFS[id]; ok {
			d.edge(d.clusterNodes[id], d.ipfsNodes[ipfsID.String()], "")
		} else {
			d.edge(d.clusterNodes[id], d.ipfsNodes[id], "dotted")
		}
	}
	d.line("")

	d.line("/* The swarm peer connections among ipfs daemons in the cluster */")
	for _, id := range ipfsPeers {
		for _, to := range ipfsEdges[id] {
			d.edge(d.ipfsNodes[id], d.ipfsNodes[to.String()], "")
		}
	}
	d.b.WriteString("}")
	return d.b.String()
}

// dotWriter accumulates the DOT text and the node names given so far.
type dotWriter struct {
	b            strings.Builder
	clusterNodes map[string]string // cluster peer ID -> node name
	ipfsNodes    map[string]string // IPFS peer ID (or errored cluster peer) -> node name
}

func (d *dotWriter) line(s string) { d.b.WriteString(s + "\n") }

func (d *dotWriter) vertex(name, label, group, color, shape string, peripheries int) {
	fmt.Fprintf(&d.b, `%s [label=%s group="%s" color="%s" style="filled" colorscheme="x11" fontcolor="black" fontname="Arial" shape="%s" `,
		name, label, group, color, shape)
	if peripheries != 0 {
		fmt.Fprintf(&d.b, `peripheries="%d" `, peripheries)
	}
	d.line("]")
}

// edge draws from -> to; an edge to a peer that has no node (a link to a
// peer the graph does not list) is left out.
func (d *dotWriter) edge(from, to, style string) {
	if from == "" || to == "" {
		return
	}
	if style != "" {
		d.line(fmt.Sprintf(`%s -> %s [ style="%s" ]`, from, to, style))
		return
	}
	d.line(from + " -> " + to)
}

func dotLabel(name, id string) string {
	return fmt.Sprintf("< <B> %s </B> <BR/> <B> %s </B> >", name, id)
}

// shortenID abbreviates a peer ID as Qm*eqhEhD.
func shortenID(id string) string {
	if len(id) < 9 {
		return id
	}
	return id[:2] + "*" + id[len(id)-6:]
}
