package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// csrfHeader carries the session's CSRF token on every POST.
const csrfHeader = "X-CSRF-Token"

// guard checks every request before h: the auth when configured (401
// otherwise), else a loopback Host (403 otherwise, against DNS
// rebinding); and sets headers that keep the pages out of frames and
// other origins' scripts.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		hd.Set("Cache-Control", "no-store")
		if s.auth == nil {
			if !loopbackHost(r.Host) {
				http.Error(w, "dashboard: without dashboard.auth only a loopback host (127.0.0.1, [::1], localhost) is served", http.StatusForbidden)
				return
			}
		} else if !s.authorized(r) {
			if s.auth.Basic != nil {
				hd.Set("WWW-Authenticate", `Basic realm="pipevisor dashboard", charset="UTF-8"`)
			} else {
				hd.Set("WWW-Authenticate", `Bearer realm="pipevisor dashboard"`)
			}
			http.Error(w, "dashboard: authentication required (dashboard.auth)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authorized checks the request's credentials against dashboard.auth in
// constant time.
func (s *Server) authorized(r *http.Request) bool {
	switch {
	case s.auth.Basic != nil:
		u, p, ok := r.BasicAuth()
		// Both compared, always, so the time says nothing about which.
		return ok && equal(u, s.auth.Basic.User)&equal(p, s.auth.Basic.Password) == 1
	case s.auth.Bearer != nil:
		scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		return ok && strings.EqualFold(scheme, "Bearer") && equal(strings.TrimSpace(tok), s.auth.Bearer.Token) == 1
	}
	return false
}

// equal compares the hashes of a and b in constant time (1 when equal).
func equal(a, b string) int {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:])
}

// loopbackHost reports whether a Host header names localhost or a
// loopback IP.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkCSRF reports whether a POST carries this session's token and,
// when the browser says where it comes from, comes from this origin.
func (s *Server) checkCSRF(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	tok := r.Header.Get(csrfHeader)
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) == 1
}
