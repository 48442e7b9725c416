package adder_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"net/url"
	"testing"

	"ipfs-cluster/internal/adder"
)

// encodeParts writes parts as ipfs-cluster-ctl does, with boundary "b".
func encodeParts(parts ...part) []byte {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.SetBoundary("b")
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, url.PathEscape(p.name)))
		switch p.kind {
		case "dir":
			h.Set("Content-Type", "application/x-directory")
		case "symlink":
			h.Set("Content-Type", "application/symlink")
		default:
			h.Set("Content-Type", "application/octet-stream")
		}
		w, _ := mw.CreatePart(h)
		w.Write([]byte(p.content))
	}
	mw.Close()
	return body.Bytes()
}

// FuzzAddMultipart feeds /add bodies to the adder: whatever the bytes, it
// returns a root or an error about the input, and never panics.
func FuzzAddMultipart(f *testing.F) {
	f.Add(encodeParts(part{"a.txt", "file", "hello"}), false)
	f.Add(encodeParts(part{"d", "dir", ""}, part{"d/a", "file", "1"}, part{"d/s", "dir", ""}, part{"d/s/b", "file", "2"}, part{"d/l", "symlink", "a"}), true)
	f.Add(encodeParts(part{"f", "file", "x"}, part{"f/g", "file", "y"}), false)
	f.Add(encodeParts(part{"d/.h", "file", "h"}, part{"d/v", "file", "v"}), true)
	full := encodeParts(part{"a", "file", "x"})
	f.Add(full[:len(full)-8], false)
	f.Fuzz(func(t *testing.T, body []byte, wrap bool) {
		a, err := adder.New(adder.Options{Wrap: wrap, Recursive: true}, adder.DiscardSink{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		root, err := a.AddMultipart(context.Background(), multipart.NewReader(bytes.NewReader(body), "b"))
		switch {
		case err == nil && !root.Defined():
			t.Fatal("no error and no root")
		case err != nil && !errors.Is(err, adder.ErrInvalidInput) && !errors.Is(err, adder.ErrInvalidOption):
			t.Fatalf("error not about the input: %v", err)
		}
	})
}
