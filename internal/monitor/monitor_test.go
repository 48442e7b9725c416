package monitor

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"ipfs-cluster/internal/api"
)

func metric(name string, p peer.ID, ttl time.Duration, valid bool) api.Metric {
	m := api.Metric{Name: name, Peer: p, Value: "1", Valid: valid}
	m.SetTTL(ttl)
	return m
}

func TestLatestAndNames(t *testing.T) {
	m := New()
	m.Publish(metric("freespace", "b", time.Minute, true))
	m.Publish(metric("freespace", "a", time.Minute, true))
	m.Publish(metric("freespace", "c", time.Minute, false))
	m.Publish(metric("ping", "a", time.Minute, true))
	got := m.LatestMetrics("freespace")
	if len(got) != 2 || got[0].Peer != "a" || got[1].Peer != "b" || got[0].ReceivedAt == 0 {
		t.Fatalf("latest: %+v", got)
	}
	if names := m.MetricNames(); len(names) != 2 || names[0] != "freespace" || names[1] != "ping" {
		t.Fatalf("names: %v", names)
	}
}

func TestExpiredMetricAlertsOnce(t *testing.T) {
	m := New()
	m.Publish(metric("ping", "a", -time.Second, true))
	if alerts := m.CheckExpired(); len(alerts) != 1 || alerts[0].Peer != "a" {
		t.Fatalf("first check: %+v", alerts)
	}
	if alerts := m.CheckExpired(); len(alerts) != 0 {
		t.Fatalf("alerted twice: %+v", alerts)
	}
	if len(m.LatestMetrics("ping")) != 0 {
		t.Fatal("an expired metric is listed as latest")
	}
	// A fresh metric clears the alert; expiring again alerts again.
	m.Publish(metric("ping", "a", time.Minute, true))
	m.Publish(metric("ping", "a", -time.Second, true))
	if alerts := m.CheckExpired(); len(alerts) != 1 {
		t.Fatalf("after recovery: %+v", alerts)
	}
	if all := m.Alerts(); len(all) != 2 || !all[0].TriggeredAt.After(all[1].TriggeredAt) && !all[0].TriggeredAt.Equal(all[1].TriggeredAt) {
		t.Fatalf("alerts newest first: %+v", all)
	}
}

// TestFailingInformerAlerts publishes invalid metrics over a valid one,
// as a peer whose kubo went down does: they do not keep the entry alive,
// so it expires and raises its alert, which names the last valid metric,
// and a valid metric clears it.
func TestFailingInformerAlerts(t *testing.T) {
	m := New()
	last := metric("freespace", "a", 50*time.Millisecond, true)
	last.Value = "1234"
	m.Publish(last)
	deadline := time.Now().Add(5 * time.Second)
	var alerts []api.Alert
	for len(alerts) == 0 && time.Now().Before(deadline) {
		m.Publish(metric("freespace", "a", time.Minute, false))
		alerts = m.CheckExpired()
		time.Sleep(10 * time.Millisecond)
	}
	if len(alerts) != 1 || alerts[0].Peer != "a" || !alerts[0].Valid || alerts[0].Value != "1234" || alerts[0].Expire != last.Expire {
		t.Fatalf("alerts while the informer fails: %+v, want the last valid metric", alerts)
	}
	if got := m.LatestMetrics("freespace"); len(got) != 0 {
		t.Fatalf("an invalid metric is listed: %+v", got)
	}
	m.Publish(metric("freespace", "a", time.Minute, true))
	if alerts := m.CheckExpired(); len(alerts) != 0 {
		t.Fatalf("alerts after the informer recovered: %+v", alerts)
	}
	if got := m.LatestMetrics("freespace"); len(got) != 1 {
		t.Fatalf("the valid metric is not listed: %+v", got)
	}
}

func TestForgetDropsAPeer(t *testing.T) {
	m := New()
	m.Publish(metric("ping", "a", -time.Second, true))
	m.Publish(metric("ping", "b", -time.Second, true))
	m.Publish(metric("freespace", "a", time.Minute, true))
	m.Publish(metric("ping", "c", -time.Second, true))
	if alerts := m.CheckExpired(); len(alerts) != 3 {
		t.Fatalf("alerts before Forget: %+v", alerts)
	}
	m.Forget("c")
	if alerts := m.Alerts(); len(alerts) != 2 || slices.ContainsFunc(alerts, func(a api.Alert) bool { return a.Peer == "c" }) {
		t.Fatalf("the alert of a forgotten peer is listed: %+v", alerts)
	}
	m = New()
	m.Publish(metric("ping", "a", -time.Second, true))
	m.Publish(metric("ping", "b", -time.Second, true))
	m.Publish(metric("freespace", "a", time.Minute, true))
	m.Forget("a")
	if last := m.Last("ping"); len(last) != 1 || last[0].Peer != "b" {
		t.Fatalf("ping after Forget: %+v", last)
	}
	if got := m.LatestMetrics("freespace"); len(got) != 0 {
		t.Fatalf("freespace after Forget: %+v", got)
	}
	if alerts := m.CheckExpired(); len(alerts) != 1 || alerts[0].Peer != "b" {
		t.Fatalf("alerts after Forget: %+v", alerts)
	}
}

// TestPauseMovesExpiry: after a gap in the heartbeats (the process was
// stopped), metrics that expired meanwhile count as fresh for the time
// they had left, so readers and the expiry check find no peer down; a
// metric that expires after the pause still raises its alert.
func TestPauseMovesExpiry(t *testing.T) {
	m := New()
	m.Publish(metric("ping", "a", time.Second, true))
	m.mu.Lock()
	m.lastBeat = time.Now().Add(-10 * time.Second) // stopped for 10 s
	for p, mt := range m.latest["ping"] {
		mt.Expire = time.Now().Add(-9 * time.Second).UnixNano() // expired during the pause, with 1 s left
		m.latest["ping"][p] = mt
	}
	m.mu.Unlock()
	if got := m.LatestMetrics("ping"); len(got) != 1 {
		t.Fatalf("after a pause: %d live metrics, want the one that had time left", len(got))
	}
	if alerts := m.CheckExpired(); len(alerts) != 0 {
		t.Fatalf("after a pause: alerts %+v", alerts)
	}
	// The ping the peer sent during the pause, delivered only now, keeps
	// the moved expiry.
	m.Publish(metric("ping", "a", -8*time.Second, true))
	if got := m.LatestMetrics("ping"); len(got) != 1 {
		t.Fatalf("after a ping sent during the pause: %d live metrics, want 1", len(got))
	}
	deadline := time.Now().Add(5 * time.Second)
	var alerts []api.Alert
	for len(alerts) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		alerts = m.CheckExpired()
	}
	if len(alerts) != 1 {
		t.Fatalf("the metric never expired after the pause: %+v", alerts)
	}
}
