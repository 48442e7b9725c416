package adder

import (
	"io"
	"strconv"
	"strings"

	chunk "github.com/ipfs/boxo/chunker"
)

// chunkKind is a chunking algorithm.
type chunkKind int

const (
	chunkSize chunkKind = iota
	chunkRabin
	chunkBuzhash
)

// chunkSpec is a parsed, valid chunker string.
type chunkSpec struct {
	kind          chunkKind
	size          int64  // chunkSize
	min, avg, max uint64 // chunkRabin
}

// parseChunker reads a chunker string with the rules of kubo v0.38.1 (boxo
// v0.35's chunk.FromString), so that exactly the strings kubo accepts are
// accepted, with the same chunk bounds. It is stricter about form only:
// trailing garbage kubo would ignore ("size-10-x", "rabinfoo") is refused.
func parseChunker(s string) (chunkSpec, error) {
	bad := func(reason string) (chunkSpec, error) {
		return chunkSpec{}, optionError(paramChunker, s, reason)
	}
	switch {
	case s == "" || s == "default":
		return chunkSpec{kind: chunkSize, size: defaultChunkSize}, nil

	case s == "buzhash":
		return chunkSpec{kind: chunkBuzhash}, nil

	case strings.HasPrefix(s, "size-"):
		n, err := strconv.Atoi(strings.TrimPrefix(s, "size-"))
		switch {
		case err != nil:
			return bad("want size-<bytes>")
		case n <= 0:
			return bad("chunk size must be positive")
		case n > maxChunkSize:
			return bad("chunk size may not exceed 1048576")
		}
		return chunkSpec{kind: chunkSize, size: int64(n)}, nil

	case s == "rabin":
		avg := uint64(defaultChunkSize)
		return chunkSpec{kind: chunkRabin, min: avg / 3, avg: avg, max: avg + avg/2}, nil

	case strings.HasPrefix(s, "rabin-"):
		parts := strings.Split(s, "-")
		switch len(parts) {
		case 2:
			avg, err := strconv.Atoi(parts[1])
			switch {
			case err != nil:
				return bad("want rabin-<avg> or rabin-<min>-<avg>-<max>")
			case avg/3 < minRabinMin:
				// chunk.NewRabin uses avg/3 as the minimum.
				return bad("rabin average must be at least 48")
			case int(float32(avg)*1.5) > maxChunkSize:
				// chunk.NewRabin uses avg*1.5 as the maximum.
				return bad("rabin maximum (1.5 x average) may not exceed 1048576")
			}
			a := uint64(avg)
			return chunkSpec{kind: chunkRabin, min: a / 3, avg: a, max: a + a/2}, nil
		case 4:
			var v [3]int
			for i, label := range []string{"min", "avg", "max"} {
				p := parts[i+1]
				if l, num, ok := strings.Cut(p, ":"); ok {
					if l != label {
						return bad("labels must be min, avg and max in that order")
					}
					p = num
				}
				n, err := strconv.Atoi(p)
				if err != nil {
					return bad("want rabin-<min>-<avg>-<max>")
				}
				v[i] = n
			}
			lo, avg, hi := v[0], v[1], v[2]
			switch {
			case lo < minRabinMin:
				return bad("rabin min must be at least 16")
			case lo >= avg:
				return bad("rabin min must be smaller than avg")
			case avg >= hi:
				return bad("rabin avg must be smaller than max")
			case hi > maxChunkSize:
				return bad("rabin max may not exceed 1048576")
			}
			return chunkSpec{kind: chunkRabin, min: uint64(lo), avg: uint64(avg), max: uint64(hi)}, nil
		}
		return bad("want rabin, rabin-<avg> or rabin-<min>-<avg>-<max>")
	}
	return bad("unrecognized chunker (want size-<bytes>, rabin, rabin-<avg>, rabin-<min>-<avg>-<max> or buzhash)")
}

// splitter returns a splitter cutting r as the spec says.
func (c chunkSpec) splitter(r io.Reader) chunk.Splitter {
	switch c.kind {
	case chunkRabin:
		return chunk.NewRabinMinMax(r, c.min, c.avg, c.max)
	case chunkBuzhash:
		return chunk.NewBuzhash(r)
	default:
		return chunk.NewSizeSplitter(r, c.size)
	}
}
