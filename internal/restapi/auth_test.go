package restapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ipfs-cluster/internal/client"
	"ipfs-cluster/internal/config"
	"ipfs-cluster/internal/daemon/daemontest"
)

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// TestBasicAuthAndTokens runs a peer with basic_auth_credentials: requests
// need a user's password or a token POST /token minted, with the
// reference's messages and challenges; /health stays open.
func TestBasicAuthAndTokens(t *testing.T) {
	p := daemontest.Start(t, func(c *config.Config) {
		// dave's empty password is accepted in the configuration, as
		// the reference's own test configurations have one, but
		// matches nothing.
		c.API.RestAPI.BasicAuthCredentials = map[string]string{"alice": "s3cret", "bob": "hunter2", "dave": ""}
	})
	for _, c := range []struct {
		name, auth, msg string
		challenges      []string
	}{
		{"no credentials", "", "unauthorized: no auth provided",
			[]string{`Bearer realm="Restricted IPFS Cluster API"`, `Basic realm="Restricted IPFS Cluster API"`}},
		{"wrong password", basic("alice", "hunter2"), "unauthorized: access denied",
			[]string{`Basic realm="Restricted IPFS Cluster API"`}},
		{"unknown user", basic("carol", "s3cret"), "unauthorized: access denied",
			[]string{`Basic realm="Restricted IPFS Cluster API"`}},
		{"empty password", basic("alice", ""), "unauthorized: access denied",
			[]string{`Basic realm="Restricted IPFS Cluster API"`}},
		{"user with an empty password", basic("dave", ""), "unauthorized: access denied",
			[]string{`Basic realm="Restricted IPFS Cluster API"`}},
		{"garbage token", "Bearer not.a.token", "unauthorized: invalid token",
			[]string{`Bearer realm="Restricted IPFS Cluster API", error="invalid_token"`}},
		// {"alg":"none"} {"iss":"alice"}, unsigned.
		{"unsigned token", "Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJhbGljZSJ9.", "unauthorized: invalid token",
			[]string{`Bearer realm="Restricted IPFS Cluster API", error="invalid_token"`}},
	} {
		r := doAuthed(t, p, "GET", "/id", c.auth)
		if r.code != http.StatusUnauthorized || !strings.Contains(string(r.body), c.msg) ||
			strings.Join(r.header.Values("WWW-Authenticate"), "|") != strings.Join(c.challenges, "|") {
			t.Errorf("%s: %d %s, challenges %q", c.name, r.code, r.body, r.header.Values("WWW-Authenticate"))
		}
	}
	if r := doAuthed(t, p, "GET", "/health", ""); r.code != http.StatusNoContent {
		t.Errorf("/health without credentials: %d %s", r.code, r.body)
	}
	if r := doAuthed(t, p, "GET", "/id", basic("alice", "s3cret")); r.code != http.StatusOK {
		t.Fatalf("/id with alice's password: %d %s", r.code, r.body)
	}

	r := doAuthed(t, p, "POST", "/token", basic("bob", "hunter2"))
	token := decode[struct{ Token string }](t, r).Token
	if r.code != http.StatusOK || token == "" {
		t.Fatalf("POST /token: %d %s", r.code, r.body)
	}
	// The reference's token for bob: the same bytes, so either can check
	// the other's.
	if want := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJib2IifQ."; !strings.HasPrefix(token, want) {
		t.Fatalf("token %s, want it to start %s", token, want)
	}
	if r := doAuthed(t, p, "GET", "/id", "bearer "+token); r.code != http.StatusOK {
		t.Fatalf("/id with bob's token: %d %s", r.code, r.body)
	}
	forged := token[:len(token)-2] + "AA"
	if r := doAuthed(t, p, "GET", "/id", "Bearer "+forged); r.code != http.StatusUnauthorized {
		t.Fatalf("/id with a forged token: %d %s", r.code, r.body)
	}

	cl, err := client.New(client.Config{Hosts: []string{p.APIAddr}, Username: "alice", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := cl.ID(t.Context()); err != nil || id.ID != p.Identity.ID {
		t.Fatalf("client with basic auth: %v", err)
	}
}

// TestHTTPS serves the API with ssl_cert_file and ssl_key_file and talks
// to it over TLS.
func TestHTTPS(t *testing.T) {
	certPath, keyPath := selfSigned(t)
	p := daemontest.Start(t, func(c *config.Config) {
		c.API.RestAPI.SSLCertFile, c.API.RestAPI.SSLKeyFile = certPath, keyPath
	})
	cl, err := client.New(client.Config{Hosts: []string{p.APIAddr}, SSL: true, NoVerifyCert: true})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := cl.ID(t.Context()); err != nil || id.ID != p.Identity.ID {
		t.Fatalf("ID over https: %v", err)
	}
	// Go's TLS server answers plain HTTP with a 400 and nothing else.
	if r, err := http.Get(p.APIURL + "/id"); err == nil {
		r.Body.Close()
		if r.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain http on the https port: %d", r.StatusCode)
		}
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// TestCORS: a browser's preflight is answered by the CORS policy without
// credentials, as in the reference (auth, then CORS), and actual requests
// from an allowed origin carry the allow and expose headers.
func TestCORS(t *testing.T) {
	const origin = "https://app.example"
	p := daemontest.Start(t, func(c *config.Config) {
		c.API.RestAPI.BasicAuthCredentials = map[string]string{"alice": "s3cret"}
		c.API.RestAPI.CORSAllowedOrigins = []string{origin}
		c.API.RestAPI.CORSAllowedMethods = []string{"GET", "POST"}
		c.API.RestAPI.CORSAllowedHeaders = []string{"Authorization"}
		c.API.RestAPI.CORSMaxAge = config.Duration(10 * time.Minute)
	})
	req := func(method, path string, header map[string]string) *http.Response {
		t.Helper()
		r, err := http.NewRequestWithContext(t.Context(), method, p.APIURL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			r.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	pre := req("OPTIONS", "/pins/recover", map[string]string{
		"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization",
	})
	h := pre.Header
	if pre.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != origin ||
		h.Get("Access-Control-Allow-Methods") != "POST" || h.Get("Access-Control-Allow-Headers") != "authorization" ||
		h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Max-Age") != "600" {
		t.Fatalf("preflight: %d %v", pre.StatusCode, h)
	}
	for name, hdr := range map[string]map[string]string{
		"other origin":      {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
		"disallowed method": {"Origin": origin, "Access-Control-Request-Method": "DELETE"},
	} {
		if r := req("OPTIONS", "/id", hdr); r.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: allowed: %v", name, r.Header)
		}
	}
	got := req("GET", "/id", map[string]string{"Origin": origin, "Authorization": basic("alice", "s3cret")})
	if got.StatusCode != http.StatusOK || got.Header.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(got.Header.Get("Access-Control-Expose-Headers"), "X-Stream-Output") {
		t.Fatalf("GET from the allowed origin: %d %v", got.StatusCode, got.Header)
	}
	if r := req("GET", "/id", map[string]string{"Origin": origin}); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without credentials: %d", r.StatusCode)
	}
}
