package informer_test

import (
	"strconv"
	"testing"
	"time"

	"ipfs-cluster/internal/informer"
	"ipfs-cluster/internal/ipfsconn"
	"ipfs-cluster/internal/kubo/kubotest"

	"github.com/rs/zerolog"
)

func TestDiskAgainstKubo(t *testing.T) {
	k := kubotest.Start(t)
	conn, err := ipfsconn.New(ipfsconn.Config{NodeMultiaddress: k.APIAddr}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"freespace", "reposize"} {
		d := &informer.Disk{IPFS: conn, Peer: "p", MetricTTL: time.Minute, MetricType: typ}
		ms := d.GetMetrics(t.Context())
		if len(ms) != 1 || !ms[0].Valid || ms[0].Name != typ || ms[0].Expired() {
			t.Fatalf("%s: %+v", typ, ms)
		}
		v, err := strconv.ParseUint(ms[0].Value, 10, 64)
		if err != nil || v == 0 {
			t.Fatalf("%s value %q", typ, ms[0].Value)
		}
	}
	if err := k.Terminate(); err != nil {
		t.Fatal(err)
	}
	d := &informer.Disk{IPFS: conn, Peer: "p", MetricTTL: time.Minute, MetricType: "freespace"}
	if ms := d.GetMetrics(t.Context()); len(ms) != 1 || ms[0].Valid {
		t.Fatalf("kubo down must give an invalid metric: %+v", ms)
	}
}

func TestTagsAndCounter(t *testing.T) {
	tags := &informer.Tags{Tags: map[string]string{"region": "eu", "group": "a"}, Peer: "p", MetricTTL: time.Minute}
	ms := tags.GetMetrics(t.Context())
	if len(ms) != 2 || ms[0].Name != "tag:group" || ms[0].Value != "a" || !ms[0].Partitionable || ms[1].Name != "tag:region" {
		t.Fatalf("tags: %+v", ms)
	}
	n := 250
	q := &informer.Counter{MetricName: "pinqueue", Count: func() int { return n }, Peer: "p", MetricTTL: time.Minute, Bucket: 100, Negative: true}
	if m := q.GetMetrics(t.Context())[0]; m.Value != "250" || m.Weight != -2 || !m.Valid {
		t.Fatalf("pinqueue: %+v", m)
	}
}
