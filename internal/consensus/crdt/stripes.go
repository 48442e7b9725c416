package crdt

import (
	"math/bits"
	"sync"
)

// numStripes is the number of per-key lock stripes. With 16 concurrent
// writers the chance that two unrelated keys share a stripe stays near 6%.
const numStripes = 256

// stripes is a set of mutexes indexed by a hash of a key: operations on one
// key serialise, operations on different keys rarely contend.
type stripes [numStripes]sync.Mutex

// stripeOf hashes key (FNV-1a) to a stripe.
func stripeOf(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % numStripes)
}

// lockKey locks the stripe of key and returns its unlock function.
func (s *stripes) lockKey(key string) func() {
	mu := &s[stripeOf(key)]
	mu.Lock()
	return mu.Unlock
}

// stripeSet is a set of stripe indexes.
type stripeSet [numStripes / 64]uint64

func (s *stripeSet) add(key string) {
	i := stripeOf(key)
	s[i/64] |= 1 << (i % 64)
}

// lock locks every stripe of the set in ascending order, the order every
// multi-key locker uses, so that two of them cannot deadlock.
func (s *stripeSet) lock(m *stripes) {
	s.each(func(i int) { m[i].Lock() })
}

func (s *stripeSet) unlock(m *stripes) {
	s.each(func(i int) { m[i].Unlock() })
}

func (s *stripeSet) each(fn func(int)) {
	for w, word := range s {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			fn(w*64 + b)
			word &^= 1 << b
		}
	}
}
