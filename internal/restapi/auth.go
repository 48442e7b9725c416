package restapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"
)

// The reference's challenges and messages, which its clients show.
const (
	basicChallenge   = `Basic realm="Restricted IPFS Cluster API"`
	bearerChallenge  = `Bearer realm="Restricted IPFS Cluster API"`
	invalidChallenge = `Bearer realm="Restricted IPFS Cluster API", error="invalid_token"`
	errNoAuth        = "unauthorized: no auth provided"
	errAccessDenied  = "unauthorized: access denied"
	errInvalidToken  = "unauthorized: invalid token"
)

type userKey struct{}

// authenticate lets a request through when it carries the basic
// credentials of one of users, or a bearer token POST /token minted for
// one of them; the user is then in the request's context for /token.
// OPTIONS requests and GET /health are never checked, as in the reference.
// With users nil there is no authentication at all.
func (s *Server) authenticate(users map[string]string, next http.Handler) http.Handler {
	if users == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions || (r.Method == http.MethodGet && r.URL.Path == "/health") {
			next.ServeHTTP(w, r)
			return
		}
		var user string
		var ok bool
		if u, p, isBasic := r.BasicAuth(); isBasic {
			if user, ok = u, checkPassword(users, u, p); !ok {
				s.deny(w, errAccessDenied, basicChallenge)
				return
			}
		} else if token, isBearer := bearerToken(r); isBearer {
			if user, ok = verifyToken(users, token, time.Now()); !ok {
				s.deny(w, errInvalidToken, invalidChallenge)
				return
			}
		} else {
			s.deny(w, errNoAuth, bearerChallenge, basicChallenge)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
	})
}

// bearerToken is the token of an Authorization header of scheme Bearer,
// which is case-insensitive.
func bearerToken(r *http.Request) (string, bool) {
	const scheme = "bearer "
	h := r.Header.Get("Authorization")
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	return h[len(scheme):], true
}

func (s *Server) deny(w http.ResponseWriter, msg string, challenges ...string) {
	for _, c := range challenges {
		w.Header().Add("WWW-Authenticate", c)
	}
	s.writeError(w, http.StatusUnauthorized, errors.New(msg))
}

// checkPassword compares in constant time; an empty user or password never
// matches.
func checkPassword(users map[string]string, user, password string) bool {
	want, ok := users[user]
	if !ok || user == "" || password == "" || want == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(password), []byte(want)) == 1
}

// token is POST /token: a JWT for the authenticated user, HS256-signed
// with the user's password, whose only claim is iss, the user; it never
// expires. This is the reference's token, so tokens pass between the two.
func (s *Server) token(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	user, _ := r.Context().Value(userKey{}).(string)
	if s.cfg.BasicAuthCredentials == nil || user == "" {
		s.writeError(w, http.StatusUnauthorized, errors.New("unauthorized"))
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]string{"token": signToken(user, s.cfg.BasicAuthCredentials[user])})
}

var b64 = base64.RawURLEncoding

// jwtHeader is the only header this API mints and accepts.
const jwtHeader = `{"alg":"HS256","typ":"JWT"}`

func signToken(user, password string) string {
	claims, _ := json.Marshal(struct {
		Iss string `json:"iss"`
	}{user})
	signed := b64.EncodeToString([]byte(jwtHeader)) + "." + b64.EncodeToString(claims)
	return signed + "." + b64.EncodeToString(mac(password, signed))
}

func mac(key, msg string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// verifyToken checks an HS256 JWT against the password of its issuer and
// returns the issuer. Any other algorithm (none, RSA: a client cannot
// choose how it is checked) is refused, and so is a token past its exp or
// before its nbf, when it has them.
func verifyToken(users map[string]string, token string, now time.Time) (string, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", false
	}
	var header struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Iss string   `json:"iss"`
		Exp *float64 `json:"exp"`
		Nbf *float64 `json:"nbf"`
	}
	raw, err := b64.DecodeString(parts[0])
	if err != nil || json.Unmarshal(raw, &header) != nil || header.Alg != "HS256" {
		return "", false
	}
	if raw, err = b64.DecodeString(parts[1]); err != nil || json.Unmarshal(raw, &claims) != nil {
		return "", false
	}
	password, ok := users[claims.Iss]
	if !ok || claims.Iss == "" || password == "" {
		return "", false
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac(password, parts[0]+"."+parts[1])) {
		return "", false
	}
	unix := float64(now.Unix())
	if (claims.Exp != nil && unix >= *claims.Exp) || (claims.Nbf != nil && unix < *claims.Nbf) {
		return "", false
	}
	return claims.Iss, true
}
