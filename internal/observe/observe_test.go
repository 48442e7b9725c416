package observe

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestServesMetricsAndProfiles(t *testing.T) {
	s, err := Start("/ip4/127.0.0.1/tcp/0", NewRegistry(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	base := "http://" + s.Addr().String()
	for path, want := range map[string]string{
		"/metrics":               "go_goroutines",
		"/debug/pprof/":          "goroutine",
		"/debug/pprof/goroutine": "",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body without %q", path, resp.StatusCode, want)
		}
	}
}

func TestBadEndpoint(t *testing.T) {
	if _, err := Start("tcp/8888", NewRegistry(), zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "tcp/8888") {
		t.Fatalf("want an error naming the endpoint, got %v", err)
	}
}
