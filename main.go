// Command ipfs-cluster is an IPFS Cluster peer, its client and its tools in
// one binary. Invoked as ipfs-cluster-service, ipfs-cluster-ctl or
// ipfs-cluster-follow (through a link of that name) it behaves as that
// tool.
package main

import (
	"os"

	"ipfs-cluster/internal/cli"
)

func main() {
	cli.Main(cli.ForProgram(os.Args[0]), os.Args[1:])
}
