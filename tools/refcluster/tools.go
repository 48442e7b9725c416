//go:build tools

// Package refcluster pins the upstream IPFS Cluster release whose client
// tools (ipfs-cluster-ctl and the Go REST client) are used as the reference
// in compatibility tests. It is a separate module so that the upstream
// dependency graph stays out of ours.
package refcluster

import _ "github.com/ipfs-cluster/ipfs-cluster/cmd/ipfs-cluster-ctl"
