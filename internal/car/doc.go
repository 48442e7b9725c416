// Package car reads, verifies and writes CAR (Content Addressable aRchive)
// streams, the format `ipfs dag export` produces and `ipfs dag import`
// consumes.
//
// The package exists for the import path of the cluster daemon: a user
// uploads a CAR, the daemon pipes it through Verify into kubo's dag/import,
// and pins the root only when Verify reported success. Everything is
// streaming: memory use is bounded by the largest block allowed
// (Options.MaxBlockSize), never by the size of the CAR, and no index or
// block set is kept.
//
// Format support:
//
//   - CARv1: a varint-prefixed DAG-CBOR header {roots, version: 1}
//     followed by varint-prefixed sections of CID bytes + block data.
//   - CARv2: the fixed 11-byte pragma, the 40-byte CARv2 header, then the
//     inner CARv1 payload located by the header's data offset and data
//     size. The characteristics, the index and any padding are ignored, and
//     bytes after the payload are never read.
//
// Verification: every block's data is hashed with the hash function its
// CID names (any function registered with go-multihash, including the
// blake2, blake3 and sha3 families, which this package registers) and
// compared with the CID's digest. Hash functions and digest lengths are
// first checked against an allow-list (verifcid.DefaultAllowlist by
// default, the same policy kubo enforces), so a CAR kubo would refuse
// fails here first, with a better message. sha2-256, by far the most common
// function, comes from the standard library, which uses the SHA-NI
// instructions on CPUs that have them.
//
// Errors are *Error values naming the byte offset, the block index (0-based)
// and the CID when known; errors.Is matches them against the sentinel
// errors (ErrTruncated, ErrHashMismatch, ...) so callers can branch on the
// kind of problem.
package car
