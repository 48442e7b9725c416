//go:build tools

// Package kubo pins the kubo version the tests and the local cluster run.
// It is a separate module so that kubo's dependency graph stays out of ours.
package kubo

import _ "github.com/ipfs/kubo/cmd/ipfs"
