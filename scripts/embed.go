// Package scripts ships the Lua batch scripts of this folder in the binary,
// so that `ipfs-cluster script NAME` runs them by name (batch_pin,
// repin_replication, under_replicated) and `ipfs-cluster script show NAME`
// prints one to adapt. The Go programs in the subfolders are separate
// packages and are not part of it.
package scripts

import (
	"embed"
	"strings"

	"ipfs-cluster/lua"
)

//go:embed *.lua
var files embed.FS

// Names lists the embedded scripts, without the .lua suffix, sorted.
func Names() []string { return lua.NamesIn(files) }

// Source returns the code of the embedded script name (without .lua) and
// whether there is one.
func Source(name string) ([]byte, bool) { return lua.SourceIn(files, name) }

// Summary is the first line of a script's header comment, without the
// comment mark and the script's name ("" when there is none).
func Summary(src []byte) string {
	line, _, _ := strings.Cut(string(src), "\n")
	line, ok := strings.CutPrefix(line, "--")
	if !ok {
		return ""
	}
	line = strings.TrimSpace(line)
	if name, rest, ok := strings.Cut(line, ": "); ok && !strings.ContainsAny(name, " \t") {
		line = rest
	}
	return line
}
