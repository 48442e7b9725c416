package crdt

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestConcurrentUnpinAndRepinConverge races unpins on one peer against
// updates of the same pins on another, round after round: every peer must
// end with the same pinset.
func TestConcurrentUnpinAndRepinConverge(t *testing.T) {
	a := newTestPeer(t, "A", testConfig())
	b := newTestPeer(t, "B", testConfig())
	c := newTestPeer(t, "C", testConfig())
	connect(t, a, b, c)
	const keys = 40
	for round := range 5 {
		var wg sync.WaitGroup
		errs := make(chan error, 3*keys)
		for i := range keys {
			wg.Add(3)
			go func() {
				defer wg.Done()
				errs <- a.c.LogUnpin(context.Background(), testPin(i, ""), time.Now())
			}()
			go func() {
				defer wg.Done()
				errs <- b.c.LogPin(context.Background(), testPin(i, fmt.Sprintf("b%d", round)))
			}()
			go func() {
				defer wg.Done()
				errs <- c.c.LogPin(context.Background(), testPin(i, fmt.Sprintf("c%d", round)))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now()
	set := waitConverged(t, 20*time.Second, a, b, c)
	t.Logf("%d racing pins converged on %d in %s", keys, len(set), time.Since(start).Round(time.Millisecond))
}
