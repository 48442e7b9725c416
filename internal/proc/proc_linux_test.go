package proc

import (
	"os"
	"testing"
	"time"
)

func TestStatCPUTime(t *testing.T) {
	// utime 250 and stime 50 ticks; the command name holds a space and a
	// parenthesis.
	line := "4242 (ipfs (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 12 0 100 0 0\n"
	got, err := statCPUTime([]byte(line))
	if err != nil || got != 3*time.Second {
		t.Fatalf("statCPUTime = %v, %v; want 3s", got, err)
	}
	for _, bad := range []string{"", "4242 no-parens S 1", "4242 (ipfs) S 1 2 3", "4242 (ipfs) S 1 2 3 4 5 6 7 8 9 10 x 50"} {
		if _, err := statCPUTime([]byte(bad)); err == nil {
			t.Errorf("statCPUTime(%q) accepted it", bad)
		}
	}
}

func TestCPUTimeOfThisProcess(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the clock has moved at least one 10 ms step, bounded
	// in time.
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for after := before; after == before; after, _ = CPUTime(os.Getpid()) {
		if time.Now().After(deadline) {
			t.Fatal("CPU time did not move in 10s of busy work")
		}
		for i := range 1_000_000 {
			x += i
		}
	}
	_ = x
	if _, err := CPUTime(-1); err == nil {
		t.Fatal("CPUTime of a process that cannot exist succeeded")
	}
}
