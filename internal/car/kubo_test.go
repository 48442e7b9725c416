package car

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"ipfs-cluster/internal/kubo"
	"ipfs-cluster/internal/kubo/kubotest"
)

// kuboTimeout bounds every call to a kubo daemon in these tests.
const kuboTimeout = 60 * time.Second

// exportCAR fetches `ipfs dag export root` from d over the RPC API.
func exportCAR(t testing.TB, d *kubo.Daemon, root string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), kuboTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.APIURL+"/api/v0/dag/export?"+url.Values{"arg": {root}}.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dag/export: %s: %s", resp.Status, body)
	}
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		t.Fatalf("dag/export: %s", e)
	}
	return body
}

// importVerified is the import path the daemon is meant to implement:
// Verify pipes the user's CAR into kubo's dag/import without pinning, and
// an error aborts the upload (CloseWithError) instead of ending it. The
// caller pins the returned root only when the error is nil.
func importVerified(ctx context.Context, d *kubo.Daemon, car io.Reader) (cid.Cid, Stats, error) {
	return importCAR(ctx, d, car, true)
}

// importCAR posts car to d's dag/import, through Verify when verify is set
// (otherwise as is: the baseline of the benchmarks).
func importCAR(ctx context.Context, d *kubo.Daemon, car io.Reader, verify bool) (cid.Cid, Stats, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.APIURL+"/api/v0/dag/import?pin-roots=false", pr)
	if err != nil {
		return cid.Undef, Stats{}, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var body []byte
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case err != nil:
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("dag/import: %s: %s", resp.Status, bytes.TrimSpace(body))
			case resp.Trailer.Get("X-Stream-Error") != "":
				err = fmt.Errorf("dag/import: %s", resp.Trailer.Get("X-Stream-Error"))
			}
		}
		// Unblock Verify if kubo stopped reading before the end.
		pr.CloseWithError(cmp(err, errors.New("dag/import returned before the end of the CAR")))
		done <- err
	}()
	var root cid.Cid
	var st Stats
	part, err := mw.CreateFormFile("file", "upload.car")
	switch {
	case err != nil:
	case verify:
		root, st, err = Verify(ctx, car, part, Options{})
	default:
		_, err = io.Copy(part, car)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		pw.CloseWithError(err)
	} else {
		pw.Close()
	}
	importErr := <-done
	if err != nil {
		return cid.Undef, st, err
	}
	if importErr != nil {
		return cid.Undef, st, importErr
	}
	return root, st, nil
}

func cmp(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func TestKuboDagExport(t *testing.T) {
	src := kubotest.Start(t, kubo.Options{Offline: true})
	dst := kubotest.Start(t, kubo.Options{Offline: true})
	ctx, cancel := context.WithTimeout(t.Context(), 2*kuboTimeout)
	defer cancel()

	big := randomBytes(1, 1500<<10) // six 256 KiB chunks: a multi-block file
	dir := t.TempDir()
	kubotest.WriteTree(t, dir, map[string]string{
		"a.txt":     "alpha\n",
		"b.txt":     "bravo\n",
		"sub/c.txt": "charlie\n",
		"big.bin":   string(big),
	})

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"cidv0 dag-pb", nil},
		{"cidv1 raw-leaves blake2b-256", []string{"--cid-version=1", "--raw-leaves", "--hash=blake2b-256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := src.Run(ctx, append([]string{"add", "-r", "-Q", "--pin=false"}, append(tc.args, dir)...)...)
			if err != nil {
				t.Fatal(err)
			}
			root := cid.MustParse(strings.TrimSpace(out))
			refs, err := src.Run(ctx, "refs", "-r", "--unique", root.String())
			if err != nil {
				t.Fatal(err)
			}
			wantBlocks := len(strings.Fields(refs)) + 1
			export := exportCAR(t, src, root.String())

			r, blks := readAll(t, export, Options{})
			if roots := r.Roots(); len(roots) != 1 || !roots[0].Equals(root) {
				t.Fatalf("Roots() = %v, want [%s]", roots, root)
			}
			if len(blks) != wantBlocks || !blks[0].Cid().Equals(root) {
				t.Fatalf("read %d blocks starting with %s; want %d starting with the root %s", len(blks), blks[0].Cid(), wantBlocks, root)
			}

			// Verify re-emits kubo's export byte for byte.
			var out2 bytes.Buffer
			got, st, err := Verify(ctx, bytes.NewReader(export), &out2, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equals(root) || st.Blocks != int64(wantBlocks) || !bytes.Equal(out2.Bytes(), export) {
				t.Fatalf("Verify = %s, %+v; output identical: %v", got, st, bytes.Equal(out2.Bytes(), export))
			}

			// The same CAR wrapped as CARv2 reads too.
			if _, v2blks := readAll(t, carV2(export, 7, []byte("index")), Options{}); len(v2blks) != wantBlocks {
				t.Fatalf("CARv2: %d blocks, want %d", len(v2blks), wantBlocks)
			}

			// A flipped byte in the middle of the big file is refused,
			// naming the block, and nothing gets pinned on the other side.
			bad := bytes.Clone(export)
			at := bytes.Index(bad, big[600<<10:600<<10+64])
			if at < 0 {
				t.Fatal("big file data not found in the CAR")
			}
			bad[at] ^= 0xff
			_, _, err = importVerified(ctx, dst, bytes.NewReader(bad))
			e := wantErr(t, err, ErrHashMismatch, "hash mismatch")
			if e.Block <= 0 || e.Offset <= 0 || e.Offset > int64(at) || !e.Cid.Defined() {
				t.Fatalf("mismatch error fields: %+v", e)
			}
			if kubotest.Pins(t, dst, "recursive")[root.String()] {
				t.Fatal("root pinned after a failed import")
			}
			// The corrupt block never reached kubo: the DAG is incomplete
			// there, so pinning it anyway would fail.
			pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
			_, err = dst.Run(pctx, "pin", "add", root.String())
			pcancel()
			if err == nil {
				t.Fatal("pinning the root of an aborted import succeeded")
			}

			// The clean CAR goes through Verify into the other daemon,
			// which then has the whole DAG locally (it is offline: pin
			// add and cat would fail on any missing block).
			got, st, err = importVerified(ctx, dst, bytes.NewReader(export))
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equals(root) || st.Blocks != int64(wantBlocks) {
				t.Fatalf("import: %s, %+v", got, st)
			}
			if _, err := dst.Run(ctx, "pin", "add", got.String()); err != nil {
				t.Fatal(err)
			}
			cat, err := dst.Run(ctx, "cat", got.String()+"/big.bin")
			if err != nil {
				t.Fatal(err)
			}
			if cat != string(big) {
				t.Fatal("big.bin differs after the round trip")
			}
		})
	}
}
