package config

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Identity is identity.json: the peer's libp2p key and the ID derived
// from it.
type Identity struct {
	ID         peer.ID
	PrivateKey crypto.PrivKey
}

type identityJSON struct {
	ID         string `json:"id"`
	PrivateKey string `json:"private_key"`
}

// NewIdentity generates an Ed25519 identity.
func NewIdentity() (*Identity, error) {
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("derive peer ID: %w", err)
	}
	return &Identity{ID: id, PrivateKey: priv}, nil
}

// LoadIdentity reads dir/identity.json; CLUSTER_ID and CLUSTER_PRIVATEKEY
// override its fields as in the reference.
func LoadIdentity(dir string, getenv func(string) string) (*Identity, error) {
	path := filepath.Join(dir, IdentityFile)
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no %s in %s: run 'ipfs-cluster init' first", IdentityFile, dir)
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var raw identityJSON
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalid, IdentityFile, describeJSONError(data, err))
	}
	if v := getenv("CLUSTER_ID"); v != "" {
		raw.ID = v
	}
	if v := getenv("CLUSTER_PRIVATEKEY"); v != "" {
		raw.PrivateKey = v
	}
	return parseIdentity(raw)
}

func parseIdentity(raw identityJSON) (*Identity, error) {
	keyBytes, err := base64.StdEncoding.DecodeString(raw.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: private_key: not base64: %v", ErrInvalid, IdentityFile, err)
	}
	priv, err := crypto.UnmarshalPrivateKey(keyBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: private_key: %v", ErrInvalid, IdentityFile, err)
	}
	id, err := peer.Decode(raw.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: id: invalid peer ID %q: %v", ErrInvalid, IdentityFile, raw.ID, err)
	}
	if !id.MatchesPrivateKey(priv) {
		return nil, fmt.Errorf("%w: %s: id %s does not match private_key", ErrInvalid, IdentityFile, id)
	}
	return &Identity{ID: id, PrivateKey: priv}, nil
}

// Save writes dir/identity.json with mode 0600.
func (i *Identity) Save(dir string) error {
	keyBytes, err := crypto.MarshalPrivateKey(i.PrivateKey)
	if err != nil {
		return fmt.Errorf("encode private key: %w", err)
	}
	b, err := json.MarshalIndent(identityJSON{ID: i.ID.String(), PrivateKey: base64.StdEncoding.EncodeToString(keyBytes)}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, IdentityFile), append(b, '\n'), 0o600)
}
