package p2p

import (
	"testing"
	"time"

	"ipfs-cluster/internal/api"
)

func TestValueCodecs(t *testing.T) {
	pin := api.PinWithOpts(cidOf(1), api.PinOptions{Name: "p"})
	ts := time.Unix(1700000000, 7).UTC()
	var nilPin *api.Pin
	for _, tc := range []struct {
		name  string
		v     any
		codec byte
	}{
		{"pin value by address", &pin, codecBinary},
		{"pin pointer by address", func() any { p := &pin; return &p }(), codecBinary},
		{"pin by value", pin, codecBinary},
		{"nil pin", nilPin, codecJSON},
		{"time", ts, codecBinary},
		{"string", "s", codecJSON},
		{"nil", nil, codecJSON},
	} {
		var enc valueEncoder
		b, err := enc.encode(tc.v)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if b[0] != tc.codec {
			t.Fatalf("%s: codec %q, want %q", tc.name, b[0], tc.codec)
		}
	}

	var enc valueEncoder
	b, _ := enc.encode(&pin)
	var byPtr *api.Pin
	if err := decodeValue(b, &byPtr); err != nil || byPtr == nil || byPtr.Name != "p" {
		t.Fatalf("binary pin into **Pin: %v %+v", err, byPtr)
	}
	var s string
	if err := decodeValue(b, &s); err == nil {
		t.Fatal("a binary pin decoded into a string")
	}
	b, _ = enc.encode(ts)
	var gotTS time.Time
	if err := decodeValue(b, &gotTS); err != nil || !gotTS.Equal(ts) {
		t.Fatalf("time: %v %v", gotTS, err)
	}
	if err := decodeValue(nil, &s); err == nil {
		t.Fatal("an empty value decoded")
	}
	if err := decodeValue([]byte("q1"), &s); err == nil {
		t.Fatal("an unknown codec decoded")
	}
	if err := decodeValue([]byte("j1"), nil); err != nil {
		t.Fatalf("discarding a value: %v", err)
	}
}

func TestAssign(t *testing.T) {
	pin := api.PinWithOpts(cidOf(2), api.PinOptions{Name: "a"})
	var v api.Pin
	if err := assign(&v, &pin); err != nil || v.Name != "a" {
		t.Fatalf("pointer into value: %v", err)
	}
	v = api.Pin{}
	if err := assign(&v, pin); err != nil || v.Name != "a" {
		t.Fatalf("value into value: %v", err)
	}
	var p *api.Pin
	if err := assign(&p, &pin); err != nil || p != &pin {
		t.Fatalf("pointer into pointer: %v", err)
	}
	if err := assign(&v, nil); err != nil || v.Name != "" {
		t.Fatalf("nil into value: %v %+v", err, v)
	}
	var nilPin *api.Pin
	v.Name = "x"
	if err := assign(&v, nilPin); err != nil || v.Name != "" {
		t.Fatalf("nil pointer into value: %v %+v", err, v)
	}
	if err := assign(nil, pin); err != nil {
		t.Fatalf("discarding: %v", err)
	}
	if err := assign(v, pin); err == nil {
		t.Fatal("assigned into a non-pointer")
	}
	var s string
	if err := assign(&s, pin); err == nil {
		t.Fatal("assigned a pin to a string")
	}
}
