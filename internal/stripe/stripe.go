// Package stripe spreads per-key locks and counters over a fixed number of
// stripes chosen by a hash of the key: work on one key serialises, work on
// different keys rarely contends, and memory does not grow with the keys.
package stripe

import (
	"iter"
	"math/bits"
	"sync"
)

// N is the number of stripes. With 16 concurrent writers the chance that
// two unrelated keys share a stripe stays near 6%.
const N = 256

// Of hashes key (FNV-1a) to a stripe. The mapping is stable: the state
// package persists counters per stripe.
func Of(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % N)
}

// Locks is one mutex per stripe.
type Locks [N]sync.Mutex

// LockKey locks the stripe of key and returns its unlock function.
func (l *Locks) LockKey(key string) func() {
	mu := &l[Of(key)]
	mu.Lock()
	return mu.Unlock
}

// Set is a set of stripes.
type Set [N / 64]uint64

// All is the set of every stripe.
func All() Set {
	var s Set
	for i := range s {
		s[i] = ^uint64(0)
	}
	return s
}

// Add puts stripe i in the set.
func (s *Set) Add(i int) { s[i/64] |= 1 << (i % 64) }

// Each yields the stripes in ascending order, the order Lock takes them
// in, so that two lockers of several stripes cannot deadlock.
func (s *Set) Each() iter.Seq[int] {
	return func(yield func(int) bool) {
		for w, word := range s {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				if !yield(w*64 + b) {
					return
				}
				word &^= 1 << b
			}
		}
	}
}

// Lock locks every stripe of the set in ascending order.
func (s *Set) Lock(l *Locks) {
	for i := range s.Each() {
		l[i].Lock()
	}
}

// Unlock unlocks every stripe of the set.
func (s *Set) Unlock(l *Locks) {
	for i := range s.Each() {
		l[i].Unlock()
	}
}
