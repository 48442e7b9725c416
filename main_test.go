package main

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuiltBinaryIsStaticAndStamped checks what `make build` produced:
// no ELF interpreter or dynamic section (a static binary), a build version
// stamped in, and the tool-name links dispatching to the right tree.
func TestBuiltBinaryIsStaticAndStamped(t *testing.T) {
	bin := filepath.Join("bin", "ipfs-cluster")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%v: run 'make build' first", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("%s is dynamically linked (program header %v)", bin, p.Type)
		}
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1.1.6") || strings.Contains(string(out), "build devel") {
		t.Fatalf("version: %v\n%s", err, out)
	}
	out, err = exec.Command(filepath.Join("bin", "ipfs-cluster-ctl"), "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ipfs-cluster-ctl version 1.1.6" {
		t.Fatalf("ipfs-cluster-ctl --version: %v\n%s", err, out)
	}
	out, err = exec.Command(filepath.Join("bin", "ipfs-cluster-service"), "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ipfs-cluster-service version 1.1.6" {
		t.Fatalf("ipfs-cluster-service --version: %v\n%s", err, out)
	}
}
