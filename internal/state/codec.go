package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"

	"ipfs-cluster/internal/api"
)

// The tracker record encoding:
//
//	version byte (1)
//	status   uvarint (one status bit)
//	attempts varint
//	flags    byte: 1 priority, 2 has a timestamp, 4 terminal, 8 queue chosen
//	         by policy, 16 pinned direct, 32 retry delay chosen by policy
//	[seconds varint, nanoseconds uvarint] when it has a timestamp
//	[retry delay uvarint nanoseconds, positive] with flag 32
//	error    uvarint length + bytes
//
// Timestamps come back in UTC with nanosecond precision, whatever the year.
const (
	recordVersion byte = 1

	flagPriority    byte = 1 << 0
	flagTS          byte = 1 << 1
	flagTerminal    byte = 1 << 2
	flagPolicyQueue byte = 1 << 3
	flagDirect      byte = 1 << 4
	flagRetryDelay  byte = 1 << 5
	knownFlags           = flagPriority | flagTS | flagTerminal | flagPolicyQueue | flagDirect | flagRetryDelay
)

// errCorruptRecord is returned when bytes do not decode as a tracker record.
var errCorruptRecord = errors.New("corrupt tracker record")

func (s *LocalStatus) appendBinary(b []byte) []byte {
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, uint64(s.Status))
	b = binary.AppendVarint(b, int64(s.Attempts))
	var flags byte
	if s.Priority {
		flags |= flagPriority
	}
	if !s.TS.IsZero() {
		flags |= flagTS
	}
	if s.Terminal {
		flags |= flagTerminal
	}
	if s.PolicyQueue {
		flags |= flagPolicyQueue
	}
	if s.Direct {
		flags |= flagDirect
	}
	if s.RetryDelay > 0 {
		flags |= flagRetryDelay
	}
	b = append(b, flags)
	if flags&flagTS != 0 {
		b = binary.AppendVarint(b, s.TS.Unix())
		b = binary.AppendUvarint(b, uint64(s.TS.Nanosecond()))
	}
	if flags&flagRetryDelay != 0 {
		b = binary.AppendUvarint(b, uint64(s.RetryDelay))
	}
	b = binary.AppendUvarint(b, uint64(len(s.Error)))
	return append(b, s.Error...)
}

// unmarshalBinary decodes a record. It never panics and rejects anything
// appendBinary would not produce: unknown versions and flags, a status that
// is not one bit, out-of-range numbers and trailing bytes.
func (s *LocalStatus) unmarshalBinary(v []byte) error {
	r := reader{buf: v}
	if version := r.byte(); r.err == nil && version != recordVersion {
		return fmt.Errorf("%w: unknown version %d", errCorruptRecord, version)
	}
	var out LocalStatus
	out.Status = api.TrackerStatus(r.uvarint())
	attempts := r.varint()
	flags := r.byte()
	if flags&flagTS != 0 {
		sec := r.varint()
		nsec := r.uvarint()
		if nsec >= uint64(time.Second) {
			r.fail("nanoseconds")
		}
		out.TS = time.Unix(sec, int64(nsec)).UTC()
	}
	if flags&flagRetryDelay != 0 {
		d := r.uvarint()
		if d == 0 || d > math.MaxInt64 {
			r.fail("retry delay")
		}
		out.RetryDelay = time.Duration(d)
	}
	out.Error = string(r.bytes())
	switch {
	case r.err != nil:
		return r.err
	case bits.OnesCount64(uint64(out.Status)) != 1:
		return fmt.Errorf("%w: status %d", errCorruptRecord, uint64(out.Status))
	case int64(int(attempts)) != attempts:
		return fmt.Errorf("%w: attempts %d", errCorruptRecord, attempts)
	case flags&^knownFlags != 0:
		return fmt.Errorf("%w: flags %#x", errCorruptRecord, flags)
	case len(r.buf) != 0:
		return fmt.Errorf("%w: %d trailing bytes", errCorruptRecord, len(r.buf))
	}
	out.Attempts = int(attempts)
	out.Priority = flags&flagPriority != 0
	out.Terminal = flags&flagTerminal != 0
	out.PolicyQueue = flags&flagPolicyQueue != 0
	out.Direct = flags&flagDirect != 0
	*s = out
	return nil
}

// reader reads the record encoding, keeping the first error so that callers
// check once at the end.
type reader struct {
	buf []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated or invalid %s", errCorruptRecord, what)
	}
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.buf) == 0 {
		r.fail("byte")
		return 0
	}
	b := r.buf[0]
	r.buf = r.buf[1:]
	return b
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf)
	if n <= 0 {
		r.fail("integer")
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.buf)
	if n <= 0 {
		r.fail("integer")
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.buf)) {
		r.fail("length")
		return nil
	}
	b := r.buf[:n]
	r.buf = r.buf[n:]
	return b
}
