package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"
)

// ErrFetchingSource wraps a failure to fetch a configuration source.
var ErrFetchingSource = errors.New("cannot fetch the configuration source")

const (
	// sourceTimeout bounds one fetch of a configuration source.
	sourceTimeout = 30 * time.Second
	// maxSourceSize bounds the configuration a source may serve.
	maxSourceSize = 1 << 20
)

// SourceOf returns the URL of a service.json that holds only
// {"source": url}.
func SourceOf(data []byte) (string, bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil || len(top) != 1 {
		return "", false
	}
	var url string
	if json.Unmarshal(top["source"], &url) != nil || url == "" {
		return "", false
	}
	return url, true
}

// SaveSource writes a dir/service.json that points to url.
func SaveSource(dir, url string) error {
	b, err := json.MarshalIndent(map[string]string{"source": url}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ServiceFile), append(b, '\n'), 0o600)
}

// FetchSource fetches and parses the configuration served at url,
// without the environment's overrides: it checks a source before a
// follower is set up on it.
func FetchSource(url string) (*Config, error) {
	data, err := fetchSource(url)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data, func(string) string { return "" })
	if err != nil {
		return nil, fmt.Errorf("configuration from %s: %w", url, err)
	}
	c.Source = url
	return c, nil
}

// fetchSource GETs the configuration served at url.
func fetchSource(url string) ([]byte, error) {
	client := http.Client{Timeout: sourceTimeout}
	resp, err := client.Get(url)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFetchingSource, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: GET %s: %s", ErrFetchingSource, url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxSourceSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrFetchingSource, url, err)
	}
	if len(data) > maxSourceSize {
		return nil, fmt.Errorf("%w: %s serves more than %d bytes: not a configuration", ErrFetchingSource, url, maxSourceSize)
	}
	return data, nil
}
