// Package monitor keeps the latest metrics of every peer and raises an
// alert when one expires.
package monitor

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/rs/zerolog"

	"ipfs-cluster/internal/api"
)

const maxAlerts = 1000

// Monitor stores metrics by name and peer. It is safe for concurrent use.
type Monitor struct {
	mu     sync.RWMutex
	latest map[string]map[peer.ID]api.Metric
	// lastValid holds, while a peer's informer fails, the last valid
	// metric it sent: the one its alert names, as the reference's does
	// (its peers never publish an invalid metric).
	lastValid map[string]map[peer.ID]api.Metric
	alerted   map[string]map[peer.ID]bool
	alerts    []api.Alert

	// lastBeat is when heartbeats last ran; zero until they start.
	lastBeat time.Time
	// lateUntil ends the time after a pause when metrics sent during it
	// may still arrive (see Publish).
	lateUntil time.Time
	log       zerolog.Logger
}

// A gap of pauseAfter between two heartbeats means this process did not
// run: stopped (SIGSTOP, a suspended machine) or starved of CPU. The
// metrics it holds could not be refreshed meanwhile, and judging them
// now would find every other peer down: the peer would move their pins
// and refuse allocations until fresh pings came. Their expiry moves by
// the gap instead, so each peer gets the time to ping it had left.
const (
	heartbeat  = 250 * time.Millisecond
	pauseAfter = 2 * time.Second
)

// heartbeats notes that this process runs, every heartbeat, until ctx
// ends; a long gap between two moves the metrics' expiry (see pauseAfter).
func (m *Monitor) heartbeats(ctx context.Context, log zerolog.Logger) {
	m.mu.Lock()
	m.log = log
	m.lastBeat = time.Now()
	m.mu.Unlock()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// Not the tick's time: a tick that waited in the channel
			// through a pause carries a time from before the end of
			// it, and would count the pause again.
			m.mu.Lock()
			m.catchUp(time.Now())
			m.mu.Unlock()
		}
	}
}

// paused reports whether the heartbeats, once started, have not run for
// pauseAfter. m.mu must be held.
func (m *Monitor) paused(now time.Time) bool {
	return !m.lastBeat.IsZero() && now.Sub(m.lastBeat) > pauseAfter
}

// catchUp moves every metric's expiry by the time this process did not
// run, when it was paused, and notes a heartbeat at now; it does nothing
// before heartbeats start. m.mu must be held for writing.
func (m *Monitor) catchUp(now time.Time) {
	if m.lastBeat.IsZero() {
		return
	}
	if m.paused(now) {
		gap := now.Sub(m.lastBeat)
		shift := (gap - heartbeat).Nanoseconds()
		for _, byPeer := range m.latest {
			for p, metric := range byPeer {
				metric.Expire += shift
				byPeer[p] = metric
			}
		}
		m.lateUntil = now.Add(max(gap, 10*time.Second))
		m.log.Warn().Dur("paused", gap).Msg("this process did not run for a while: the metrics of other peers expire that much later")
	}
	m.lastBeat = now
}

// awake runs catchUp before metrics are judged, when the heartbeats have
// not run for pauseAfter: right after a pause, a reader may come first.
func (m *Monitor) awake() {
	m.mu.RLock()
	late := m.paused(time.Now())
	m.mu.RUnlock()
	if late {
		m.mu.Lock()
		m.catchUp(time.Now())
		m.mu.Unlock()
	}
}

// New returns an empty monitor.
func New() *Monitor {
	return &Monitor{
		latest:    map[string]map[peer.ID]api.Metric{},
		lastValid: map[string]map[peer.ID]api.Metric{},
		alerted:   map[string]map[peer.ID]bool{},
		log:       zerolog.Nop(),
	}
}

// Publish records a metric as the latest of its peer and name.
func (m *Monitor) Publish(metric api.Metric) {
	metric.ReceivedAt = time.Now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	byPeer := m.latest[metric.Name]
	if byPeer == nil {
		byPeer = map[peer.ID]api.Metric{}
		m.latest[metric.Name] = byPeer
	}
	// An invalid metric says the peer's informer fails (its kubo is
	// down, say). It replaces the entry, so that allocation stops using
	// the peer at once, but keeps the entry's expiry: a failing informer
	// must let it expire and raise an alert, as a silent one would.
	prev, ok := byPeer[metric.Peer]
	if ok && metric.Valid && prev.Valid && time.Now().Before(m.lateUntil) {
		// A metric sent while this process was paused arrives after
		// it resumed, with an expiry catchUp did not move: it must not
		// undo the move, and make a live peer look gone.
		metric.Expire = max(metric.Expire, prev.Expire)
	}
	if ok && !metric.Valid {
		metric.Expire = min(metric.Expire, prev.Expire)
		if prev.Valid {
			if m.lastValid[metric.Name] == nil {
				m.lastValid[metric.Name] = map[peer.ID]api.Metric{}
			}
			m.lastValid[metric.Name][metric.Peer] = prev
		}
	}
	byPeer[metric.Peer] = metric
	if metric.Valid {
		delete(m.alerted[metric.Name], metric.Peer)
		delete(m.lastValid[metric.Name], metric.Peer)
	}
}

// LatestMetrics returns the latest valid, unexpired metric of each peer,
// sorted by peer.
func (m *Monitor) LatestMetrics(name string) []api.Metric {
	m.awake()
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := []api.Metric{}
	for _, metric := range m.latest[name] {
		if metric.Valid && !metric.Expired() {
			out = append(out, metric)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

// Last returns the last metric of each peer for name, expired or not, so
// that a peer that went down can still be named.
func (m *Monitor) Last(name string) []api.Metric {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]api.Metric, 0, len(m.latest[name]))
	for _, metric := range m.latest[name] {
		out = append(out, metric)
	}
	return out
}

// Forget drops every metric and alert state of peer p, as for a peer
// removed from the cluster: it is no longer listed, alerted or dialed. A
// metric it sends later is recorded again.
func (m *Monitor) Forget(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, byPeer := range m.latest {
		delete(byPeer, p)
	}
	for _, byPeer := range m.lastValid {
		delete(byPeer, p)
	}
	for _, a := range m.alerted {
		delete(a, p)
	}
	m.alerts = slices.DeleteFunc(m.alerts, func(a api.Alert) bool { return a.Peer == p })
}

// MetricNames lists the names of the metrics received, sorted.
func (m *Monitor) MetricNames() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	names := make([]string, 0, len(m.latest))
	for n := range m.latest {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CheckExpired raises one alert per metric that expired since it was last
// valid, and returns the new alerts.
func (m *Monitor) CheckExpired() []api.Alert {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.catchUp(now)
	var raised []api.Alert
	for name, byPeer := range m.latest {
		for p, metric := range byPeer {
			if !metric.Expired() {
				continue
			}
			a := m.alerted[name]
			if a == nil {
				a = map[peer.ID]bool{}
				m.alerted[name] = a
			}
			if a[p] {
				continue
			}
			a[p] = true
			if last, ok := m.lastValid[name][p]; ok {
				metric = last
			}
			alert := api.Alert{Metric: metric, TriggeredAt: now}
			raised = append(raised, alert)
			if len(m.alerts) >= maxAlerts {
				m.alerts = m.alerts[:0]
			}
			m.alerts = append(m.alerts, alert)
		}
	}
	return raised
}

// Alerts returns the alerts raised so far, newest first.
func (m *Monitor) Alerts() []api.Alert {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]api.Alert, len(m.alerts))
	for i, a := range m.alerts {
		out[len(out)-1-i] = a
	}
	return out
}
