package car

import (
	"errors"

	"github.com/ipfs/go-cid"
)

// Sentinel errors. Every error this package returns about the content of a
// CAR is an *Error whose Kind is one of these, so errors.Is(err, ErrX)
// works. Their own messages are short because they are normally seen inside
// a longer *Error message.
var (
	// ErrTruncated: the input ended inside the header or a section, or a
	// CARv2 payload is shorter than its sections claim.
	ErrTruncated = errors.New("car: truncated")
	// ErrHashMismatch: a block's data does not hash to its CID.
	ErrHashMismatch = errors.New("car: hash mismatch")
	// ErrRoots: the header does not name exactly one root (returned by
	// SingleRoot and Verify; the Reader itself accepts any number).
	ErrRoots = errors.New("car: wrong number of roots")
	// ErrRootMissing: the root block is not in the CAR (Verify).
	ErrRootMissing = errors.New("car: root block missing")
	// ErrTooLarge: the header or a section is longer than the configured
	// limit.
	ErrTooLarge = errors.New("car: too large")
	// ErrMalformed: the bytes are not a valid CAR (bad varint, bad header
	// CBOR, invalid CID, inconsistent CARv2 header, ...).
	ErrMalformed = errors.New("car: malformed")
	// ErrVersion: the header names a CAR version other than 1 or 2.
	ErrVersion = errors.New("car: unsupported version")
	// ErrUnsupportedHash: a CID uses a hash function or digest length that
	// the allow-list refuses or that no registered implementation computes,
	// so the block cannot be verified.
	ErrUnsupportedHash = errors.New("car: unsupported hash")
)

// Error describes a problem with a CAR stream. Its fields let a caller
// report or log the location programmatically; Error() already includes
// them in a human-readable sentence.
type Error struct {
	// Kind is the sentinel error naming the kind of problem, or nil for an
	// I/O error of the underlying reader (then Err is set).
	Kind error
	// Offset is the byte offset in the input where the problem is: the
	// start of the offending section or header, or for ErrTruncated the
	// offset at which the input ended. -1 when not applicable.
	Offset int64
	// Block is the 0-based index of the offending block (section) among the
	// blocks of the CAR, or -1 when the problem is not in a block.
	Block int64
	// Cid is the offending block's CID when it could be parsed.
	Cid cid.Cid
	// Err is the underlying cause, if any (an I/O error, a CID parse error).
	Err error

	msg string
}

func (e *Error) Error() string { return e.msg }

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}
