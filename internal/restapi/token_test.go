package restapi

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

var tokenUsers = map[string]string{"alice": "s3cret"}

// TestTokenTimes: a token with exp or nbf is valid only between them; the
// tokens /token mints have neither and never expire.
func TestTokenTimes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	sign := func(claims string) string {
		signed := b64.EncodeToString([]byte(jwtHeader)) + "." + b64.EncodeToString([]byte(claims))
		return signed + "." + b64.EncodeToString(mac("s3cret", signed))
	}
	for _, c := range []struct {
		claims string
		ok     bool
	}{
		{`{"iss":"alice"}`, true},
		{`{"iss":"alice","exp":1800000001}`, true},
		{`{"iss":"alice","exp":1800000000}`, false},
		{`{"iss":"alice","nbf":1800000001}`, false},
		{`{"iss":"alice","nbf":1799999999,"exp":1800000100}`, true},
		{`{"iss":"bob"}`, false},
		{`{}`, false},
	} {
		if _, ok := verifyToken(tokenUsers, sign(c.claims), now); ok != c.ok {
			t.Errorf("claims %s: valid %v, want %v", c.claims, ok, c.ok)
		}
	}
	if user, ok := verifyToken(tokenUsers, signToken("alice", "s3cret"), now.Add(100*365*24*time.Hour)); !ok || user != "alice" {
		t.Fatalf("a minted token: %q %v", user, ok)
	}
}

// FuzzVerifyToken feeds arbitrary bearer tokens to the check: it never
// panics, and accepts only a token signed with the password of its issuer.
func FuzzVerifyToken(f *testing.F) {
	f.Add(signToken("alice", "s3cret"))
	f.Add(signToken("alice", "wrong"))
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJhbGljZSJ9.")
	f.Add("a.b.c")
	f.Add("...")
	f.Fuzz(func(t *testing.T, token string) {
		user, ok := verifyToken(tokenUsers, token, time.Now())
		if !ok {
			return
		}
		parts := strings.Split(token, ".")
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if user != "alice" || err != nil || string(sig) != string(mac("s3cret", parts[0]+"."+parts[1])) {
			t.Fatalf("accepted %q for %q", token, user)
		}
	})
}
