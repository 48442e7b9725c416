package kubotest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ipfs-cluster/internal/kubo"
)

// AddFiles adds n small distinct files to d without pinning them, in one
// ipfs invocation, and returns their CIDs in order.
func AddFiles(t testing.TB, d *kubo.Daemon, n int) []string {
	t.Helper()
	dir := t.TempDir()
	files := make([]string, n)
	stamp := time.Now().UnixNano()
	for i := range files {
		files[i] = filepath.Join(dir, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(files[i], []byte(fmt.Sprintf("%s %d %d", t.Name(), stamp, i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := d.Run(t.Context(), append([]string{"add", "-q", "--pin=false"}, files...)...)
	if err != nil {
		t.Fatal(err)
	}
	cids := strings.Fields(out)
	if len(cids) != n {
		t.Fatalf("added %d files, kubo printed %d CIDs", n, len(cids))
	}
	return cids
}

// Pins returns the CIDs d holds with a pin of the given type
// (recursive, direct, indirect or all).
func Pins(t testing.TB, d *kubo.Daemon, typ string) map[string]bool {
	t.Helper()
	out, err := d.Run(t.Context(), "pin", "ls", "--type="+typ, "-q")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, c := range strings.Fields(out) {
		set[c] = true
	}
	return set
}

// WriteTree writes files (relative path → content) below dir.
func WriteTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
