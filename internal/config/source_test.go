package config

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// A service.json that holds only {"source": url} loads the configuration
// served there, with the environment's overrides; a source that fails, or
// serves something else than a configuration, is a clear error.
func TestLoadFromSource(t *testing.T) {
	tmpl := Default()
	tmpl.Cluster.Secret, _ = NewSecret()
	tmpl.Cluster.Peername = "from-template"
	tmpl.Cluster.FollowerMode = true
	good, err := tmpl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"/good.json":    good,
		"/nested.json":  []byte(`{"source": "http://127.0.0.1:1/other.json"}`),
		"/invalid.json": []byte(`{"cluster": {"secret": "short"}}`),
		"/huge.json":    []byte(strings.Repeat(" ", maxSourceSize+1)),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()

	load := func(path string, env map[string]string) (*Config, error) {
		t.Helper()
		dir := t.TempDir()
		if err := SaveSource(dir, srv.URL+path); err != nil {
			t.Fatal(err)
		}
		return Load(dir, func(k string) string { return env[k] })
	}
	c, err := load("/good.json", map[string]string{"CLUSTER_PEERNAME": "from-env"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != srv.URL+"/good.json" || c.Cluster.Peername != "from-env" || !c.Cluster.FollowerMode || c.Cluster.Secret != tmpl.Cluster.Secret {
		t.Fatalf("loaded %q from %q, follower %t", c.Cluster.Peername, c.Source, c.Cluster.FollowerMode)
	}
	for path, want := range map[string]string{
		"/missing.json": "404 Not Found",
		"/nested.json":  "cannot point to another source",
		"/invalid.json": "cluster.secret",
		"/huge.json":    "serves more than",
	} {
		_, err := load(path, nil)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want an error naming the URL and %q", path, err, want)
		}
		if fetch := path == "/missing.json" || path == "/huge.json"; errors.Is(err, ErrFetchingSource) != fetch {
			t.Errorf("%s: %v: ErrFetchingSource %t, want %t", path, err, !fetch, fetch)
		}
	}
	// The file written is what the reference's follower init writes.
	dir := t.TempDir()
	if err := SaveSource(dir, "http://example.invalid/service.json"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dir + "/" + ServiceFile)
	if err != nil {
		t.Fatal(err)
	}
	if url, ok := SourceOf(b); !ok || url != "http://example.invalid/service.json" {
		t.Fatalf("SourceOf(%s) = %q, %t", b, url, ok)
	}
}
