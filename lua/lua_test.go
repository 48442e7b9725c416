package lua_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multibase"
	mh "github.com/multiformats/go-multihash"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/policy"
	luamods "ipfs-cluster/lua"
)

// quiet gives the default limits with a generous time budget: these tests
// check results, and run under -race on loaded machines.
func quiet() policy.Options {
	l := zerolog.Nop()
	return policy.Options{Logger: &l, Timeout: 5 * time.Second}
}

// TestSpecs runs testdata/*_spec.lua. Each spec requires the module it
// checks and asserts at top level, so loading it as a policy (in the real
// sandbox) runs the checks; a failed assert fails Load with file:line.
func TestSpecs(t *testing.T) {
	specs, err := filepath.Glob("testdata/*_spec.lua")
	if err != nil || len(specs) == 0 {
		t.Fatalf("no specs: %v", err)
	}
	for _, spec := range specs {
		t.Run(filepath.Base(spec), func(t *testing.T) {
			if _, err := policy.Load(spec, quiet()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestEveryModuleHasASpecAndDocs keeps the modules documented: each one has
// a spec, and a header comment that names every exported function.
func TestEveryModuleHasASpecAndDocs(t *testing.T) {
	fn := regexp.MustCompile(`(?m)^function M\.(\w+)\(`)
	for _, name := range luamods.Modules() {
		src, ok := luamods.Source(name)
		if !ok {
			t.Fatalf("Source(%s) missing", name)
		}
		if _, err := os.Stat(filepath.Join("testdata", name+"_spec.lua")); err != nil {
			t.Errorf("module %s has no spec: %v", name, err)
		}
		header := string(src)
		if i := strings.Index(header, "\nlocal "); i > 0 {
			header = header[:i]
		}
		if !strings.HasPrefix(header, "-- "+name+": ") {
			t.Errorf("module %s does not start with a '-- %s: ...' header", name, name)
		}
		for _, m := range fn.FindAllStringSubmatch(string(src), -1) {
			if !strings.Contains(header, name+"."+m[1]+"(") {
				t.Errorf("module %s: function %s is not documented in the header", name, m[1])
			}
		}
	}
	if _, ok := luamods.Source("../lua"); ok {
		t.Error("Source accepts a path outside the module set")
	}
}

// TestCidAgainstGoCid compares cid.info with go-cid on CIDs of several
// codecs, hash functions and multibases.
func TestCidAgainstGoCid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.lua")
	src := `
local cid = require("cid")
function admit(pin)
  local md = pin.metadata
  local info, err = cid.info(md.s)
  if info == nil then return false, err end
  local got = string.format("%d %d %d %s", info.version, info.codec_code, info.hash_code, info.multibase)
  if got ~= md.want then return false, got .. " ~= " .. md.want end
  return true
end`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(path, quiet())
	if err != nil {
		t.Fatal(err)
	}
	bases := map[multibase.Encoding]string{
		multibase.Base32: "base32", multibase.Base32Upper: "base32upper", multibase.Base58BTC: "base58btc",
		multibase.Base36: "base36", multibase.Base36Upper: "base36upper", multibase.Base16: "base16",
		multibase.Base16Upper: "base16upper",
	}
	codecs := []uint64{cid.Raw, cid.DagProtobuf, cid.DagCBOR, cid.DagJSON, cid.Libp2pKey, 0x0300, 0x1234}
	hashes := []uint64{mh.SHA2_256, mh.SHA2_512, mh.BLAKE3, mh.IDENTITY}
	n := 0
	for _, codec := range codecs {
		for _, hash := range hashes {
			sum, err := mh.Sum([]byte("data"+strconv.Itoa(n)), hash, -1)
			if err != nil {
				t.Fatal(err)
			}
			c := cid.NewCidV1(codec, sum)
			for enc, name := range bases {
				s, err := c.StringOfBase(enc)
				if err != nil {
					t.Fatal(err)
				}
				want := strings.Join([]string{"1", strconv.FormatUint(codec, 10), strconv.FormatUint(hash, 10), name}, " ")
				admit(t, p, s, want)
				n++
			}
		}
	}
	v0 := cid.NewCidV0(must(mh.Sum([]byte("v0"), mh.SHA2_256, -1)))
	admit(t, p, v0.String(), "0 112 18 base58btc")
}

func admit(t *testing.T, p *policy.Policy, s, want string) {
	t.Helper()
	pin := api.Pin{}
	pin.Metadata = map[string]string{"s": s, "want": want}
	ok, reason, err := p.Admit(context.Background(), pin)
	if !ok || err != nil {
		t.Errorf("cid.info(%s): %s %v (want %s)", s, reason, err, want)
	}
}

func must(h mh.Multihash, err error) mh.Multihash {
	if err != nil {
		panic(err)
	}
	return h
}
