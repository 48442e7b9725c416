package pintracker

import (
	"context"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"ipfs-cluster/internal/api"
)

func TestQueuePriorityLaneFirst(t *testing.T) {
	q := newOpQueue()
	ops := make([]*operation, 6)
	for i := range ops {
		ops[i] = &operation{attempts: i}
		q.Push(ops[i], i%2 == 1)
	}
	want := []int{1, 3, 5, 0, 2, 4}
	for _, w := range want {
		if op := q.Pop(); op.attempts != w {
			t.Fatalf("popped %d, want %d", op.attempts, w)
		}
	}
	done := make(chan *operation)
	go func() { done <- q.Pop() }()
	q.Close()
	select {
	case op := <-done:
		if op != nil {
			t.Fatalf("Pop after Close = %+v", op)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pop did not return after Close")
	}
}

func TestFifoReleasesMemory(t *testing.T) {
	var f fifo
	for i := range 5000 {
		f.push(&operation{attempts: i})
	}
	for i := range 4000 {
		if op := f.pop(); op.attempts != i {
			t.Fatalf("pop %d = %d", i, op.attempts)
		}
	}
	if f.len() != 1000 || f.head > 1024 {
		t.Fatalf("len %d head %d: drained space not reclaimed", f.len(), f.head)
	}
}

func TestPriorityRule(t *testing.T) {
	tr := &Tracker{cfg: Config{PriorityMaxAge: time.Hour, PriorityMaxRetries: 2}}
	fresh := api.Pin{Timestamp: time.Now()}
	old := api.Pin{Timestamp: time.Now().Add(-2 * time.Hour)}
	cases := []struct {
		op   operation
		want bool
	}{
		{operation{typ: opPin, pin: fresh}, true},
		{operation{typ: opPin, pin: fresh, attempts: 2}, true},
		{operation{typ: opPin, pin: fresh, attempts: 3}, false},
		{operation{typ: opPin, pin: old}, false},
		{operation{typ: opUnpin, pin: fresh}, false},
	}
	for i, c := range cases {
		if got := tr.isPriority(&c.op); got != c.want {
			t.Errorf("case %d: priority %v, want %v", i, got, c.want)
		}
	}
}

func TestBackoffDoublesToCap(t *testing.T) {
	tr := &Tracker{cfg: Config{RetryMinDelay: time.Second, RetryMaxDelay: 10 * time.Second}}
	want := []time.Duration{time.Second, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for attempts, w := range want {
		if got := tr.backoff(attempts); got != w {
			t.Errorf("backoff(%d) = %s, want %s", attempts, got, w)
		}
	}
}

func TestRetrySchedulerFiresInOrder(t *testing.T) {
	r := newRetryScheduler()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	fired := make(chan api.Cid, 3)
	go r.Run(ctx, func(c api.Cid) { fired <- c })
	a, b, c := testCid(t, "a"), testCid(t, "b"), testCid(t, "c")
	now := time.Now()
	r.Schedule(a, now.Add(150*time.Millisecond))
	r.Schedule(b, now.Add(50*time.Millisecond))
	r.Schedule(c, now.Add(100*time.Millisecond))
	r.Cancel(c)
	r.Schedule(a, now.Add(80*time.Millisecond)) // rescheduling replaces
	for _, want := range []api.Cid{b, a} {
		select {
		case got := <-fired:
			if got != want {
				t.Fatalf("fired %s, want %s", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("retry did not fire")
		}
	}
	select {
	case got := <-fired:
		t.Fatalf("cancelled or replaced retry fired: %s", got)
	case <-time.After(200 * time.Millisecond):
	}
	if r.Len() != 0 {
		t.Fatalf("%d retries left", r.Len())
	}
}

func testCid(t *testing.T, s string) api.Cid {
	h, err := mh.Sum([]byte(s), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return api.NewCid(cid.NewCidV1(cid.Raw, h))
}
