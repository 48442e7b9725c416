package p2p

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
)

// Value codecs: the first byte of every encoded value.
const (
	codecBinary byte = 'b' // encoding.BinaryAppender / BinaryUnmarshaler (api.Pin)
	codecJSON   byte = 'j' // encoding/json
)

// valueEncoder encodes values into a buffer it reuses, so that a stream
// of values costs no allocation per value for the buffer. Not safe for
// concurrent use.
type valueEncoder struct {
	buf  []byte
	jbuf bytes.Buffer
	enc  *json.Encoder
}

// encode returns the encoding of v, valid until the next call. Types with
// a binary encoding use it; everything else is JSON.
func (e *valueEncoder) encode(v any) ([]byte, error) {
	if ba, ok := binaryAppender(v); ok {
		b, err := ba.AppendBinary(append(e.buf[:0], codecBinary))
		if err != nil {
			return nil, fmt.Errorf("encode %T: %w", v, err)
		}
		e.buf = b
		return b, nil
	}
	if e.enc == nil {
		e.enc = json.NewEncoder(&e.jbuf)
		e.enc.SetEscapeHTML(false)
	}
	e.jbuf.Reset()
	e.jbuf.WriteByte(codecJSON)
	if err := e.enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	b := e.jbuf.Bytes()
	return b[:len(b)-1], nil // json.Encoder ends every value with '\n'
}

// decodeValue decodes an encoded value into target, a pointer. A nil
// target discards the value. Decoders copy what they keep, so data may be
// reused afterwards.
func decodeValue(data []byte, target any) error {
	if target == nil {
		return nil
	}
	if len(data) == 0 {
		return fmt.Errorf("%w: empty value", ErrProtocol)
	}
	switch data[0] {
	case codecBinary:
		u, ok := binaryUnmarshaler(target)
		if !ok {
			return fmt.Errorf("%w: binary value for %T, which has no binary decoding", ErrProtocol, target)
		}
		return u.UnmarshalBinary(data[1:])
	case codecJSON:
		return json.Unmarshal(data[1:], target)
	}
	return fmt.Errorf("%w: unknown value codec %q", ErrProtocol, data[0])
}

// assign is decodeValue for calls to self: it sets *dst to src, which is
// a value of dst's element type or a pointer to one, without encoding. A
// nil dst discards the value; a nil src stores the zero value.
func assign(dst, src any) error {
	if dst == nil {
		return nil
	}
	d := reflect.ValueOf(dst)
	if d.Kind() != reflect.Pointer || d.IsNil() {
		return fmt.Errorf("rpc: cannot store into %T: want a non-nil pointer", dst)
	}
	d = d.Elem()
	if src == nil {
		d.SetZero()
		return nil
	}
	s := reflect.ValueOf(src)
	switch {
	case s.Type().AssignableTo(d.Type()):
		d.Set(s)
	case s.Kind() == reflect.Pointer && s.Type().Elem().AssignableTo(d.Type()):
		if s.IsNil() {
			d.SetZero()
		} else {
			d.Set(s.Elem())
		}
	default:
		return fmt.Errorf("rpc: cannot use %T as %s", src, d.Type())
	}
	return nil
}

var (
	binaryAppenderType    = reflect.TypeFor[encoding.BinaryAppender]()
	binaryUnmarshalerType = reflect.TypeFor[encoding.BinaryUnmarshaler]()
)

// binaryAppender finds the binary encoding of v, whether v is the value, a
// pointer to it, or a pointer to such a pointer (handlers' results are
// passed by address, so a handler returning *api.Pin emits **api.Pin). A
// nil pointer has none: it is encoded as JSON null.
func binaryAppender(v any) (encoding.BinaryAppender, bool) {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return nil, false
	}
	if rv.Kind() != reflect.Pointer {
		if !reflect.PointerTo(rv.Type()).Implements(binaryAppenderType) {
			return nil, false
		}
		p := reflect.New(rv.Type())
		p.Elem().Set(rv)
		rv = p
	}
	for !rv.IsNil() && rv.Elem().Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	if rv.IsNil() || !rv.Type().Implements(binaryAppenderType) {
		return nil, false
	}
	return rv.Interface().(encoding.BinaryAppender), true
}

// binaryUnmarshaler finds the binary decoding of target, a pointer to the
// value or to a pointer to it (allocated if nil).
func binaryUnmarshaler(target any) (encoding.BinaryUnmarshaler, bool) {
	rv := reflect.ValueOf(target)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, false
	}
	t := rv.Type()
	for t.Elem().Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if !t.Implements(binaryUnmarshalerType) {
		return nil, false
	}
	for rv.Elem().Kind() == reflect.Pointer {
		if rv.Elem().IsNil() {
			rv.Elem().Set(reflect.New(rv.Elem().Type().Elem()))
		}
		rv = rv.Elem()
	}
	return rv.Interface().(encoding.BinaryUnmarshaler), true
}
