//go:build tools

// Package lint pins the static checkers `make lint` runs: staticcheck and
// deadcode (exported functions nothing reaches, which staticcheck does not
// report).
package lint

import (
	_ "golang.org/x/tools/cmd/deadcode"
	_ "honnef.co/go/tools/cmd/staticcheck"
)
