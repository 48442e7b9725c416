// Package lua ships the Lua helper modules that policies may require.
//
// The modules live beside this file as plain Lua sources and are embedded in
// the binary, so a policy gets the same helpers on every peer whatever is
// installed on the host. The policy engine (internal/policy) compiles them in
// its sandbox; nothing here runs Lua by itself. Each module starts with a
// comment header documenting its functions, and docs/policies.md lists them.
package lua

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

// FS holds the embedded modules, one NAME.lua file per module at its root.
// Only the top level is embedded: testdata is not part of the binary.
//
//go:embed *.lua
var FS embed.FS

// Modules lists the names that require() resolves to an embedded module,
// sorted.
func Modules() []string { return NamesIn(FS) }

// Source returns the source of the embedded module name and whether it
// exists.
func Source(name string) ([]byte, bool) { return SourceIn(FS, name) }

// NamesIn lists the NAME.lua files at the root of fsys, without the
// suffix, sorted: the embedded modules here, the built-in scripts in
// scripts/.
func NamesIn(fsys fs.FS) []string {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		// Callers pass embedded trees, fixed at build time: reading their
		// root cannot fail.
		panic(err)
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".lua"); ok && !e.IsDir() {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// SourceIn returns the source of NAME.lua at the root of fsys and whether
// it exists. A name with a path separator or a dot is never found.
func SourceIn(fsys fs.FS, name string) ([]byte, bool) {
	if strings.ContainsAny(name, `/\.`) {
		return nil, false
	}
	b, err := fs.ReadFile(fsys, name+".lua")
	if err != nil {
		return nil, false
	}
	return b, true
}
