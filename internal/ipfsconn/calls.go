package ipfsconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/url"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

// ID returns kubo's peer ID and swarm addresses.
func (c *Connector) ID(ctx context.Context) (api.IPFSID, error) {
	var out struct {
		ID        string
		Addresses []string
	}
	if err := c.callJSON(ctx, "id", nil, &out); err != nil {
		return api.IPFSID{}, err
	}
	pid, err := peer.Decode(out.ID)
	if err != nil {
		return api.IPFSID{}, fmt.Errorf("id: bad peer ID: %w", err)
	}
	id := api.IPFSID{ID: pid, Addresses: make([]api.Multiaddr, 0, len(out.Addresses))}
	for _, s := range out.Addresses {
		m, err := api.NewMultiaddr(s)
		if err != nil {
			return api.IPFSID{}, fmt.Errorf("id: %w", err)
		}
		id.Addresses = append(id.Addresses, m)
	}
	return id, nil
}

// RepoStat returns the repo's size and configured maximum, without counting
// objects (size-only), which is cheap.
func (c *Connector) RepoStat(ctx context.Context) (api.IPFSRepoStat, error) {
	var out struct{ RepoSize, StorageMax uint64 }
	if err := c.callJSON(ctx, "repo/stat", url.Values{"size-only": {"true"}}, &out); err != nil {
		return api.IPFSRepoStat{}, err
	}
	return api.IPFSRepoStat{RepoSize: out.RepoSize, StorageMax: out.StorageMax}, nil
}

// RepoGC runs kubo's garbage collector, bounded by repogc_timeout, and calls
// fn for every key removed or failed to remove as kubo streams them. An
// error from fn stops the listing and is returned.
func (c *Connector) RepoGC(ctx context.Context, fn func(api.IPFSRepoGC) error) error {
	ctx, cancel := c.withTimeout(ctx, c.cfg.RepoGCTimeout, "repogc_timeout")
	defer cancel()
	s, err := c.post(ctx, c.long, "repo/gc", url.Values{"stream-errors": {"true"}}, nil, "")
	if err != nil {
		return fmt.Errorf("repo gc: %w", err)
	}
	defer s.close()
	for {
		// {"Key":{"/":"<cid>"}} or {"Error":"..."}
		var out struct {
			Key   api.Cid
			Error string
		}
		err := s.next(&out)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("repo gc: %w", err)
		}
		if err := fn(api.IPFSRepoGC{Key: out.Key, Error: out.Error}); err != nil {
			return err
		}
	}
}

// Resolve returns the CID a path points to: /ipfs/<cid>/sub/path resolves to
// the leaf. A bare CID or /ipfs/<cid> is answered without asking kubo.
// Paths that do not end on a CID, such as a field inside a block, are
// errors.
func (c *Connector) Resolve(ctx context.Context, path string) (api.Cid, error) {
	full := path
	if !strings.HasPrefix(full, "/") {
		full = "/ipfs/" + full
	}
	if rest, ok := strings.CutPrefix(strings.TrimSuffix(full, "/"), "/ipfs/"); ok && !strings.Contains(rest, "/") {
		ci, err := api.DecodeCid(rest)
		if err != nil {
			return api.CidUndef, fmt.Errorf("resolve %s: %w: %w", path, api.ErrBadPath, err)
		}
		return ci, nil
	}
	var out struct{ Path string }
	if err := c.callJSON(ctx, "resolve", url.Values{"arg": {full}}, &out); err != nil {
		// kubo answered, and refused the path.
		var refused *RPCError
		if errors.As(err, &refused) {
			return api.CidUndef, fmt.Errorf("resolve %s: %w: %w", path, api.ErrBadPath, err)
		}
		return api.CidUndef, fmt.Errorf("resolve %s: %w", path, err)
	}
	rest, ok := strings.CutPrefix(out.Path, "/ipfs/")
	if !ok || strings.Contains(rest, "/") {
		return api.CidUndef, fmt.Errorf("resolve %s: %w: kubo answered %q, which is not an immutable /ipfs/<cid> path", path, api.ErrBadPath, out.Path)
	}
	ci, err := api.DecodeCid(rest)
	if err != nil {
		return api.CidUndef, fmt.Errorf("resolve %s: %w: %w", path, api.ErrBadPath, err)
	}
	return ci, nil
}

// BlockPut stores one block in kubo, unpinned, and returns its CID. codec
// (such as "raw" or "dag-pb") and mhType (such as "sha2-256") may be empty
// for kubo's defaults.
func (c *Connector) BlockPut(ctx context.Context, data []byte, codec, mhType string) (api.Cid, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, err := mw.CreateFormFile("file", "block")
	if err == nil {
		_, err = part.Write(data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return api.CidUndef, fmt.Errorf("block put: %w", err)
	}
	q := url.Values{"pin": {"false"}}
	if codec != "" {
		q.Set("cid-codec", codec)
	}
	if mhType != "" {
		q.Set("mhtype", mhType)
	}
	ctx, cancel := c.withTimeout(ctx, c.cfg.IPFSRequestTimeout, "ipfs_request_timeout")
	defer cancel()
	s, err := c.post(ctx, c.short, "block/put", q, &body, mw.FormDataContentType())
	if err != nil {
		return api.CidUndef, fmt.Errorf("block put: %w", err)
	}
	defer s.close()
	var out struct{ Key string }
	if err := s.next(&out); err != nil {
		return api.CidUndef, fmt.Errorf("block put: %w", err)
	}
	if err := s.finish(); err != nil {
		return api.CidUndef, fmt.Errorf("block put: %w", err)
	}
	ci, err := api.DecodeCid(out.Key)
	if err != nil {
		return api.CidUndef, fmt.Errorf("block put: %w", err)
	}
	return ci, nil
}

// SwarmConnect connects kubo to every address, which must end in
// /p2p/<peer ID>, in parallel. The error joins the failed connections.
func (c *Connector) SwarmConnect(ctx context.Context, addrs []api.Multiaddr) error {
	return c.swarmConnect(ctx, c.short, addrs)
}

// SwarmPeers returns the peers kubo is connected to.
func (c *Connector) SwarmPeers(ctx context.Context) ([]peer.ID, error) {
	var out struct{ Peers []struct{ Peer string } }
	if err := c.callJSON(ctx, "swarm/peers", nil, &out); err != nil {
		return nil, err
	}
	peers := make([]peer.ID, 0, len(out.Peers))
	for _, p := range out.Peers {
		pid, err := peer.Decode(p.Peer)
		if err != nil {
			return nil, fmt.Errorf("swarm peers: %w", err)
		}
		peers = append(peers, pid)
	}
	return peers, nil
}

// ConfigKey returns one value of kubo's configuration; key is a path with
// "/" separators such as "Datastore/StorageMax". Values come as decoded JSON
// (string, float64, bool, []any, map[string]any).
func (c *Connector) ConfigKey(ctx context.Context, key string) (any, error) {
	var cfg map[string]any
	if err := c.callJSON(ctx, "config/show", nil, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", key, err)
	}
	var v any = cfg
	for _, part := range strings.Split(key, "/") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("config %s: not found", key)
		}
		if v, ok = m[part]; !ok {
			return nil, fmt.Errorf("config %s: not found", key)
		}
	}
	return v, nil
}
