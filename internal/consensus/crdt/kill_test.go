package crdt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
	"ipfs-cluster/internal/state"
)

// The child peer: this test binary re-run with these variables set.
const (
	childDirEnv   = "CRDT_TEST_CHILD_DIR"
	childBatchEnv = "CRDT_TEST_CHILD_BATCHING"
	childFsyncEnv = "CRDT_TEST_CHILD_FSYNC"
	childPinsEnv  = "CRDT_TEST_CHILD_PINS"
)

// runChild runs a peer alone on dir, logs pins from 16 goroutines, prints
// "acked" once LogPin returned for all of them, and waits to be killed.
func runChild(dir string) int {
	n, _ := strconv.Atoi(os.Getenv(childPinsEnv))
	cfg := testConfig()
	if os.Getenv(childBatchEnv) == "1" {
		// Nothing is committed before the kill: every pin is only in
		// the journal.
		cfg.Batching = BatchingConfig{MaxBatchSize: 1 << 20, MaxBatchAge: time.Hour, MaxQueueSize: 1 << 20}
	}
	cfg.FsyncAcks = os.Getenv(childFsyncEnv) == "1"
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return fail(err)
	}
	c, _, err := startChildPeer(dir, key, cfg, func(db *state.DB) Applier { return newTestApplier(db) })
	if err != nil {
		return fail(err)
	}
	t := &childTB{}
	logPins(t, c, childPins(n), 16)
	if t.failed != "" {
		return fail(fmt.Errorf("%s", t.failed))
	}
	fmt.Println("acked")
	select {}
}

// startChildPeer starts, in a child process, a peer on dir with key,
// applying through the applier newApplier returns.
func startChildPeer(dir string, key crypto.PrivKey, cfg Config, newApplier func(*state.DB) Applier) (*Consensus, host.Host, error) {
	h, err := newHost(key, &gater{})
	if err != nil {
		return nil, nil, err
	}
	ps, err := newPubSub(context.Background(), h)
	if err != nil {
		return nil, nil, err
	}
	db, err := state.Open(dir, zerolog.Nop())
	if err != nil {
		return nil, nil, err
	}
	c, err := New(cfg, h, ps, db, newApplier(db), zerolog.Nop())
	return c, h, err
}

func childPins(n int) []api.Pin {
	pins := make([]api.Pin, n)
	for i := range pins {
		pins[i] = testPin(i, "acked")
	}
	return pins
}

// childTB lets the child use logPins without a testing.T.
type childTB struct {
	testing.TB
	failed string
}

func (c *childTB) Helper()                   {}
func (c *childTB) Fatal(args ...any)         { c.failed = fmt.Sprint(args...) }
func (c *childTB) Fatalf(f string, a ...any) { c.failed = fmt.Sprintf(f, a...) }

// TestAckedPinsSurviveKill runs a peer in a child process, kills it with
// SIGKILL right after LogPin acknowledged 300 pins, exports its state
// (state export) before anything commits its journal, restarts it on the
// same database, and checks that every pin is in its CRDT and state and reaches
// another peer; with batching, before the batch was ever committed; with
// fsync_acks or without.
func TestAckedPinsSurviveKill(t *testing.T) {
	const n = 300
	for _, mode := range []struct{ batching, fsync bool }{{true, false}, {false, false}, {true, true}, {false, true}} {
		batching := mode.batching
		t.Run(fmt.Sprintf("batching=%t,fsync_acks=%t", batching, mode.fsync), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(),
				childDirEnv+"="+dir,
				childPinsEnv+"="+strconv.Itoa(n),
				childBatchEnv+"="+map[bool]string{true: "1", false: "0"}[batching],
				childFsyncEnv+"="+map[bool]string{true: "1", false: "0"}[mode.fsync],
			)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			acked := make(chan bool, 1)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					if strings.TrimSpace(sc.Text()) == "acked" {
						acked <- true
						return
					}
				}
				acked <- false
			}()
			select {
			case ok := <-acked:
				if !ok {
					_ = cmd.Wait()
					t.Fatal("child peer exited before acknowledging its pins")
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatal("child peer did not acknowledge its pins in time")
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			checkOfflineExport(t, dir, childPins(n))

			b := newTestPeer(t, "B", testConfig())
			key, _, err := crypto.GenerateEd25519Key(nil)
			if err != nil {
				t.Fatal(err)
			}
			a := &testPeer{t: t, name: "A (restarted)", dir: dir, key: key, cfg: testConfig()}
			start := time.Now()
			a.start()
			t.Cleanup(a.stop)
			want := lines(childPins(n)...)
			if got := a.crdtPinset(); !equal(got, want) {
				t.Fatalf("after restart the CRDT holds %d of %d acknowledged pins", len(got), n)
			}
			waitSamePinset(t, 10*time.Second, want, a)
			connect(t, a, b)
			waitSamePinset(t, 20*time.Second, want, b)
			t.Logf("all %d acknowledged pins back after kill -9 and on the other peer %s after restart",
				n, time.Since(start).Round(time.Millisecond))
			if s, err := a.c.Stats(t.Context()); err != nil || !s.Unclean {
				t.Fatalf("the restarted peer did not notice the unclean stop: %+v (%v)", s, err)
			}
			waitFor(t, 10*time.Second, "the repair after the unclean stop", func() bool {
				s, err := a.c.Stats(context.Background())
				return err == nil && !s.Dirty
			})
		})
	}
}

// checkOfflineExport exports the state of the stopped peer in dir as
// state export does, with what its journal holds, and checks that every
// pin of want is in the export.
func checkOfflineExport(t *testing.T, dir string, want []api.Pin) {
	t.Helper()
	db, err := state.Open(dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pending, err := Pending(db, testConfig().DatastoreNamespace)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := db.Export(t.Context(), &buf, pending); err != nil {
		t.Fatal(err)
	}
	exported := map[api.Cid]bool{}
	if err := state.DecodeExport(&buf, func(p api.Pin) error {
		exported[p.Cid] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range want {
		if !exported[p.Cid] {
			t.Fatalf("the export after the kill lacks the acknowledged pin %s (%d of %d exported, %d from the journal)",
				p.Cid, len(exported), len(want), len(pending))
		}
	}
}
