// Package kubo runs real kubo (IPFS) daemons bound to the loopback
// interface. Tests use it to drive a genuine daemon, and the local-cluster
// demo uses it to give every cluster peer an IPFS node of its own. Repos are
// configured so that a daemon never contacts the internet: no bootstrap
// peers, no routing, no NAT traversal, no relays, no telemetry.
package kubo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// BinEnv is the environment variable naming the kubo binary to run.
const BinEnv = "IPFS_BIN"

// Binary returns the path of the kubo binary: $IPFS_BIN when set, otherwise
// bin/ipfs in the module root (the directory holding go.mod, found by walking
// up from the working directory).
func Binary() (string, error) {
	if p := os.Getenv(BinEnv); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("kubo binary not found at %s=%s: %w", BinEnv, p, err)
		}
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("kubo binary: %w", err)
	}
	root, err := moduleRoot(wd)
	if err != nil {
		return "", fmt.Errorf("kubo binary not found (%s unset): %w: run `make kubo`", BinEnv, err)
	}
	p := filepath.Join(root, "bin", "ipfs")
	if err := checkExecutable(p); err != nil {
		return "", fmt.Errorf("kubo binary not found (%s unset, looked for %s): run `make kubo`", BinEnv, p)
	}
	return p, nil
}

func moduleRoot(dir string) (string, error) {
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod in %s or any parent", dir)
		}
		d = parent
	}
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}
