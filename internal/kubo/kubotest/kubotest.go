// Package kubotest starts real kubo daemons for tests.
package kubotest

import (
	"testing"

	"ipfs-cluster/internal/kubo"
)

// Start starts a loopback-only kubo daemon for the duration of the test: its
// repo lives in t.TempDir() unless opts say otherwise, and it is stopped by
// t.Cleanup. At most one Options may be given. A missing kubo binary fails
// the test: these tests are meant to run against the real daemon.
func Start(t testing.TB, opts ...kubo.Options) *kubo.Daemon {
	t.Helper()
	var o kubo.Options
	switch len(opts) {
	case 0:
	case 1:
		o = opts[0]
	default:
		t.Fatalf("kubotest.Start: %d Options given, want at most one", len(opts))
	}
	if o.RepoDir == "" {
		o.RepoDir = t.TempDir()
	}
	d, err := kubo.Start(t.Context(), o)
	if err != nil {
		t.Fatalf("starting kubo: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("stopping kubo: %v", err)
		}
	})
	return d
}
