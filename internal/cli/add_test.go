package cli

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestProgressClearsForOutput: a line printed during an upload starts on
// a cleared line, the bar is drawn again below it, and stop leaves the
// bar's last state on its own line.
func TestProgressClearsForOutput(t *testing.T) {
	var out bytes.Buffer
	p := startProgress(&out, 2000)
	p.sent.Store(1000)
	if err := p.interrupt(func() error {
		_, err := fmt.Fprintln(&out, "added QmX a.txt")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	p.sent.Store(2000)
	p.stop()

	got := out.String()
	i := strings.Index(got, "added QmX a.txt\n")
	if i < 0 || !strings.HasSuffix(got[:i], "\r\x1b[K") {
		t.Fatalf("the output line does not start on a cleared line: %q", got)
	}
	after := got[i+len("added QmX a.txt\n"):]
	if !strings.HasPrefix(after, "\r\x1b[K") || !strings.Contains(after, " 50.0%") {
		t.Fatalf("the bar is not drawn again below the line: %q", after)
	}
	last := after[strings.LastIndex(after, "\r\x1b[K"):]
	if !strings.Contains(last, "2.0 kB / 2.0 kB  100.0%") || !strings.HasSuffix(last, "\n") {
		t.Fatalf("last state of the bar: %q", last)
	}
	var nilBar *uploadProgress
	if err := nilBar.interrupt(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}
