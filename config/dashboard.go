package config

import (
	"net"
	"strings"
)

// Dashboard is the dashboard: section: the web dashboard served by the
// supervisor. Not a RoadRunner section.
type Dashboard struct {
	// Address is host:port to serve the dashboard on; empty means off.
	// An address that is not a loopback one (127.0.0.0/8, ::1,
	// localhost) needs Auth.
	Address string `yaml:"address"`
	// Auth, when set, is required by every page and action; nil means
	// none (only allowed on a loopback address).
	Auth *DashboardAuth `yaml:"auth"`
}

// DashboardAuth is dashboard.auth: exactly one of Basic and Bearer.
type DashboardAuth struct {
	// Basic is HTTP basic authentication with one user.
	Basic *DashboardBasic `yaml:"basic"`
	// Bearer is a static bearer token (Authorization: Bearer <token>).
	Bearer *DashboardBearer `yaml:"bearer"`
}

// DashboardBasic is dashboard.auth.basic.
type DashboardBasic struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

// DashboardBearer is dashboard.auth.bearer.
type DashboardBearer struct {
	Token string `yaml:"token"`
}

// IsLoopbackAddress reports whether the host of a host:port address is a
// loopback address or "localhost". An empty host (every interface) is not.
func IsLoopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validate checks dashboard.*; errors name the key.
func (d Dashboard) validate() []*Error {
	var errs []*Error
	add := func(path, format string, args ...any) {
		errs = append(errs, errAt(path, 0, format, args...))
	}
	if d.Address != "" {
		if reason := checkHostPort(d.Address); reason != "" {
			add("dashboard.address", "%s", reason)
		} else if d.Auth == nil && !IsLoopbackAddress(d.Address) {
			add("dashboard.auth", "required when dashboard.address (%s) is not a loopback address: set auth.basic (user, password) or auth.bearer (token), or listen on 127.0.0.1", d.Address)
		}
	}
	if a := d.Auth; a != nil {
		switch {
		case a.Basic == nil && a.Bearer == nil:
			add("dashboard.auth", "set one of basic (user, password) or bearer (token)")
		case a.Basic != nil && a.Bearer != nil:
			add("dashboard.auth", "set one of basic or bearer, not both")
		case a.Basic != nil:
			if a.Basic.User == "" {
				add("dashboard.auth.basic.user", "required")
			} else if strings.Contains(a.Basic.User, ":") {
				add("dashboard.auth.basic.user", "must not contain ':'")
			}
			if a.Basic.Password == "" {
				add("dashboard.auth.basic.password", "required")
			}
		case a.Bearer != nil:
			if a.Bearer.Token == "" {
				add("dashboard.auth.bearer.token", "required")
			}
		}
	}
	return errs
}
