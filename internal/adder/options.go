package adder

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/verifcid"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	// Registers every hash function kubo links in (blake2, blake3, sha3,
	// keccak, shake, murmur3): without them mh.Sum fails for those names.
	_ "github.com/multiformats/go-multihash/register/all"
)

// DAG layouts, as the layout query parameter names them.
const (
	LayoutBalanced = "balanced"
	LayoutTrickle  = "trickle"
)

// Defaults of kubo v0.38.1's `ipfs add` (its config's Import section left
// at defaults). Changing any of them changes the CIDs produced.
const (
	// DefaultChunker cuts files into fixed 256KiB chunks.
	DefaultChunker = "size-262144"
	// DefaultHashFunction is the multihash of every block.
	DefaultHashFunction = "sha2-256"
	// DefaultMaxFileLinks bounds the links of one file node
	// (boxo's helpers.DefaultLinksPerBlock).
	DefaultMaxFileLinks = 174
	// DefaultMaxHAMTFanout is the width of HAMT shard nodes
	// (Import.UnixFSHAMTDirectoryMaxFanout).
	DefaultMaxHAMTFanout = 256
	// DefaultHAMTShardingSize is the estimated size above which a
	// directory becomes a HAMT (Import.UnixFSHAMTDirectorySizeThreshold,
	// "256KiB"). The estimate is the sum, over the entries, of the name's
	// length plus the length of the binary CID.
	DefaultHAMTShardingSize = 256 << 10
)

// Limits kubo v0.38.1 enforces (boxo v0.35's chunker and HAMT rules; later
// boxo versions relaxed some of them, so they are restated here to refuse
// exactly what kubo refuses).
const (
	// defaultChunkSize is the chunk size of DefaultChunker and the average
	// of the plain "rabin" chunker.
	defaultChunkSize = 256 << 10
	// maxChunkSize is the largest chunk a chunker may produce (1MiB).
	maxChunkSize = 1 << 20
	// minRabinMin is the smallest minimum chunk size of the rabin chunker.
	minRabinMin = 16
	// maxHAMTFanout is the widest HAMT node kubo's config accepts.
	maxHAMTFanout = 1024
)

// Query parameter names. The first group is the reference's /add API; the
// second are kubo's `ipfs add` options of the same names, accepted as
// extensions.
const (
	paramRecursive  = "recursive"
	paramHidden     = "hidden"
	paramWrap       = "wrap-with-directory"
	paramLayout     = "layout"
	paramChunker    = "chunker"
	paramRawLeaves  = "raw-leaves"
	paramCidVersion = "cid-version"
	paramHash       = "hash"
	paramProgress   = "progress"

	paramTrickle           = "trickle"
	paramMaxFileLinks      = "max-file-links"
	paramMaxDirectoryLinks = "max-directory-links"
	paramMaxHAMTFanout     = "max-hamt-fanout"
)

// Options are the parameters that shape the DAG of an add. Their zero value
// is kubo's `ipfs add` with no flags: balanced layout, 256KiB chunks,
// CIDv0, sha2-256, no raw leaves. Given the same options, the Adder
// produces the same CIDs as kubo v0.38.1's `ipfs add`.
//
// Each field names the /add query parameter it is read from.
type Options struct {
	// Recursive allows directories among the paths given to AddPaths
	// (recursive). Without it, a directory path is an error, as in
	// `ipfs add` without -r. Multipart and files inputs are taken as
	// they come: their sender already decided what to include.
	Recursive bool
	// Hidden includes entries whose name starts with a dot (hidden).
	// Paths and multipart parts named explicitly at the top level are
	// always included, as kubo does.
	Hidden bool
	// Wrap wraps everything added in one directory (wrap-with-directory),
	// whose CID is the root.
	Wrap bool
	// Layout is LayoutBalanced (also "") or LayoutTrickle (layout).
	Layout string
	// Chunker is how files are cut into leaves (chunker): "" or
	// "default" (= size-262144), "size-<bytes>", "rabin",
	// "rabin-<avg>", "rabin-<min>-<avg>-<max>" or "buzhash". Chunks may
	// not exceed 1MiB.
	Chunker string
	// RawLeaves stores file data in raw blocks instead of UnixFS leaves
	// (raw-leaves). It is honoured when true. When false it is honoured
	// only if RawLeavesSet: otherwise CID version 1 turns raw leaves on,
	// as kubo does.
	RawLeaves bool
	// RawLeavesSet says RawLeaves was given explicitly.
	RawLeavesSet bool
	// CidVersion is 0 or 1 (cid-version). A hash function other than
	// sha2-256 needs version 1 and gets it, unless CidVersionSet says
	// version 0 was asked for explicitly, which is an error.
	CidVersion int
	// CidVersionSet says CidVersion was given explicitly.
	CidVersionSet bool
	// HashFunction is the multihash name of every block's hash (hash):
	// "" (= sha2-256) or any name kubo's add accepts, such as sha2-512,
	// sha3-512, blake2b-256 or blake3. Case does not matter.
	HashFunction string
	// Progress reports the bytes read of each file as it is added
	// (progress), every 256KiB.
	Progress bool
	// MaxFileLinks bounds the links of one file node (max-file-links,
	// kubo's option; 0 = 174). Must be at least 2.
	MaxFileLinks int
	// MaxDirectoryLinks turns a directory with more entries into a HAMT
	// (max-directory-links, kubo's option; 0 = no limit, only the size
	// estimate counts).
	MaxDirectoryLinks int
	// MaxHAMTFanout is the width of HAMT nodes (max-hamt-fanout, kubo's
	// option; 0 = 256): a power of two from 8 to 1024.
	MaxHAMTFanout int
	// HAMTShardingSize is the estimated directory size above which a
	// directory is sharded (kubo's Import.UnixFSHAMTDirectorySizeThreshold;
	// not a query parameter). 0 means DefaultHAMTShardingSize; negative
	// turns size-based sharding off.
	HAMTShardingSize int
}

// settings are Options resolved and checked: what the builder runs with.
type settings struct {
	prefix       cid.Prefix
	rawLeaves    bool
	trickle      bool
	chunker      chunkSpec
	maxLinks     int
	maxDirLinks  int
	fanout       int
	shardingSize int // 0: never by size
	hidden       bool
	recursive    bool
	wrap         bool
	progress     bool
}

// optionError is the error of one invalid option: it names the option the
// way the query does.
func optionError(name, value string, reason string) error {
	return fmt.Errorf("%w: %s %q: %s", ErrInvalidOption, name, value, reason)
}

// Validate checks the options without adding anything. Every error wraps
// ErrInvalidOption and names the offending parameter and value.
func (o Options) Validate() error {
	_, err := o.resolve()
	return err
}

// resolve applies kubo's rules for defaults and interactions between
// options: a non-sha2-256 hash implies CIDv1, CIDv1 implies raw leaves
// unless they were set explicitly.
func (o Options) resolve() (settings, error) {
	s := settings{
		hidden:    o.Hidden,
		recursive: o.Recursive,
		wrap:      o.Wrap,
		progress:  o.Progress,
	}

	switch strings.ToLower(o.Layout) {
	case "", LayoutBalanced:
	case LayoutTrickle:
		s.trickle = true
	default:
		return s, optionError(paramLayout, o.Layout, "want balanced or trickle")
	}

	var err error
	if s.chunker, err = parseChunker(o.Chunker); err != nil {
		return s, err
	}

	hashName := strings.ToLower(o.HashFunction)
	if hashName == "" {
		hashName = DefaultHashFunction
	}
	mhType, err := hashCode(hashName)
	if err != nil {
		return s, optionError(paramHash, o.HashFunction, err.Error())
	}

	version := o.CidVersion
	switch {
	case version != 0 && version != 1:
		return s, optionError(paramCidVersion, strconv.Itoa(o.CidVersion), "want 0 or 1")
	case mhType != mh.SHA2_256 && version == 0 && o.CidVersionSet:
		return s, optionError(paramCidVersion, "0", "CIDv0 only supports sha2-256, and hash is "+hashName)
	case mhType != mh.SHA2_256:
		version = 1
	}
	s.prefix, _ = merkledag.PrefixForCidVersion(version)
	s.prefix.MhType = mhType
	s.prefix.MhLength = -1

	s.rawLeaves = o.RawLeaves
	if !o.RawLeavesSet && version == 1 {
		s.rawLeaves = true
	}

	switch {
	case o.MaxFileLinks == 0:
		s.maxLinks = DefaultMaxFileLinks
	case o.MaxFileLinks < 2:
		// One link per node would make the balanced layout grow forever.
		return s, optionError(paramMaxFileLinks, strconv.Itoa(o.MaxFileLinks), "must be at least 2")
	default:
		s.maxLinks = o.MaxFileLinks
	}

	if o.MaxDirectoryLinks < 0 {
		return s, optionError(paramMaxDirectoryLinks, strconv.Itoa(o.MaxDirectoryLinks), "must not be negative")
	}
	s.maxDirLinks = o.MaxDirectoryLinks

	switch f := o.MaxHAMTFanout; {
	case f == 0:
		s.fanout = DefaultMaxHAMTFanout
	case f < 8 || f > maxHAMTFanout || f&(f-1) != 0:
		return s, optionError(paramMaxHAMTFanout, strconv.Itoa(f), "must be a power of two from 8 to 1024")
	default:
		s.fanout = f
	}

	switch {
	case o.HAMTShardingSize == 0:
		s.shardingSize = DefaultHAMTShardingSize
	case o.HAMTShardingSize > 0:
		s.shardingSize = o.HAMTShardingSize
	}
	return s, nil
}

// hashCode returns the multihash code of a hash function name if kubo's add
// would accept it: a known name, a registered implementation, and allowed by
// boxo's verifcid (which refuses md5, murmur3 and digests under 20 bytes).
func hashCode(name string) (uint64, error) {
	code, ok := mh.Names[name]
	if !ok {
		return 0, fmt.Errorf("unrecognized hash function")
	}
	probe, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: code, MhLength: -1}.Sum([]byte("probe"))
	if err != nil {
		return 0, fmt.Errorf("no implementation: %w", err)
	}
	if err := verifcid.ValidateCid(verifcid.DefaultAllowlist, probe); err != nil {
		return 0, err
	}
	return code, nil
}

// ParseQuery reads Options from /add query parameters, as the reference's
// REST API and ipfs-cluster-ctl name them (recursive, hidden,
// wrap-with-directory, layout, chunker, raw-leaves, cid-version, hash,
// progress), plus kubo's trickle, max-file-links, max-directory-links and
// max-hamt-fanout. Other parameters (pin options, local, format, ...) are
// ignored: they are not about the DAG. An empty value means the default.
//
// The options are validated, so that a bad request fails before any data
// is read; every error wraps ErrInvalidOption and names the parameter.
func ParseQuery(q url.Values) (Options, error) {
	var o Options
	var err error
	bools := []struct {
		name string
		v    *bool
		set  *bool
	}{
		{paramRecursive, &o.Recursive, nil},
		{paramHidden, &o.Hidden, nil},
		{paramWrap, &o.Wrap, nil},
		{paramProgress, &o.Progress, nil},
		{paramRawLeaves, &o.RawLeaves, &o.RawLeavesSet},
	}
	for _, b := range bools {
		v := q.Get(b.name)
		if v == "" {
			continue
		}
		if *b.v, err = strconv.ParseBool(v); err != nil {
			return Options{}, optionError(b.name, v, "not a boolean")
		}
		if b.set != nil {
			*b.set = true
		}
	}

	o.Layout = q.Get(paramLayout)
	if v := q.Get(paramTrickle); v != "" {
		// The kubo RPC spelling, which the IPFS proxy forwards.
		trickle, err := strconv.ParseBool(v)
		if err != nil {
			return Options{}, optionError(paramTrickle, v, "not a boolean")
		}
		if trickle {
			if l := strings.ToLower(o.Layout); l != "" && l != LayoutTrickle {
				return Options{}, optionError(paramTrickle, v, "conflicts with layout="+o.Layout)
			}
			o.Layout = LayoutTrickle
		}
	}
	o.Chunker = q.Get(paramChunker)
	o.HashFunction = q.Get(paramHash)

	ints := []struct {
		name string
		v    *int
		set  *bool
	}{
		{paramCidVersion, &o.CidVersion, &o.CidVersionSet},
		{paramMaxFileLinks, &o.MaxFileLinks, nil},
		{paramMaxDirectoryLinks, &o.MaxDirectoryLinks, nil},
		{paramMaxHAMTFanout, &o.MaxHAMTFanout, nil},
	}
	for _, i := range ints {
		v := q.Get(i.name)
		if v == "" {
			continue
		}
		if *i.v, err = strconv.Atoi(v); err != nil {
			return Options{}, optionError(i.name, v, "not an integer")
		}
		if i.set != nil {
			*i.set = true
		}
	}

	if err := o.Validate(); err != nil {
		return Options{}, err
	}
	return o, nil
}

// Query encodes the options as /add query parameters that ParseQuery reads
// back to equivalent options. Parameters at their zero value are left out.
// cid-version and raw-leaves carry the values in effect, so that a server
// applying no implication of its own (such as the reference's, which does
// not turn CIDv1 on for a non-sha2-256 hash) builds the same DAG.
func (o Options) Query() url.Values {
	version, rawLeaves := o.CidVersion, o.RawLeaves
	if s, err := o.resolve(); err == nil {
		version, rawLeaves = int(s.prefix.Version), s.rawLeaves
	}
	q := url.Values{}
	setBool := func(name string, v bool) {
		if v {
			q.Set(name, "true")
		}
	}
	setBool(paramRecursive, o.Recursive)
	setBool(paramHidden, o.Hidden)
	setBool(paramWrap, o.Wrap)
	setBool(paramProgress, o.Progress)
	if rawLeaves || o.RawLeavesSet {
		q.Set(paramRawLeaves, strconv.FormatBool(rawLeaves))
	}
	if o.Layout != "" {
		q.Set(paramLayout, o.Layout)
	}
	if o.Chunker != "" {
		q.Set(paramChunker, o.Chunker)
	}
	if o.HashFunction != "" {
		q.Set(paramHash, o.HashFunction)
	}
	if version != 0 || o.CidVersionSet {
		q.Set(paramCidVersion, strconv.Itoa(version))
	}
	setInt := func(name string, v int) {
		if v != 0 {
			q.Set(name, strconv.Itoa(v))
		}
	}
	setInt(paramMaxFileLinks, o.MaxFileLinks)
	setInt(paramMaxDirectoryLinks, o.MaxDirectoryLinks)
	setInt(paramMaxHAMTFanout, o.MaxHAMTFanout)
	return q
}
