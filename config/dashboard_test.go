package config

import (
	"strings"
	"testing"
)

// dashboardYAML is a minimal valid config with section appended.
func dashboardYAML(section string) string {
	return "version: \"3\"\nserver:\n  command: php worker.php\n" + section
}

// The dashboard section loads: off by default, address and either kind
// of auth as written.
func TestDashboardLoads(t *testing.T) {
	r, err := Parse([]byte(dashboardYAML("")))
	if err != nil {
		t.Fatal(err)
	}
	if r.Dashboard.Address != "" || r.Dashboard.Auth != nil {
		t.Fatalf("dashboard without a section = %+v, want off", r.Dashboard)
	}
	r, err = Parse([]byte(dashboardYAML("dashboard:\n  address: 0.0.0.0:8090\n  auth:\n    basic: {user: ops, password: s3cret}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if r.Dashboard.Address != "0.0.0.0:8090" || r.Dashboard.Auth.Basic.User != "ops" || r.Dashboard.Auth.Basic.Password != "s3cret" {
		t.Fatalf("dashboard = %+v", r.Dashboard)
	}
	r, err = Parse([]byte(dashboardYAML("dashboard:\n  address: 127.0.0.1:8090\n  auth:\n    bearer: {token: tok}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if r.Dashboard.Auth.Bearer.Token != "tok" {
		t.Fatalf("dashboard = %+v", r.Dashboard)
	}
	for _, addr := range []string{"127.0.0.1:8090", "[::1]:8090", "localhost:8090"} {
		if _, err := Parse([]byte(dashboardYAML("dashboard:\n  address: \"" + addr + "\"\n"))); err != nil {
			t.Errorf("loopback %s without auth: %v", addr, err)
		}
	}
}

// Bad dashboard settings fail with the key named; a non-loopback address
// needs auth.
func TestDashboardErrors(t *testing.T) {
	for _, c := range []struct{ section, key, reason string }{
		{"dashboard:\n  address: 0.0.0.0:8090\n", "dashboard.auth", "not a loopback address"},
		{"dashboard:\n  address: \":8090\"\n", "dashboard.auth", "not a loopback address"},
		{"dashboard:\n  address: 10.1.2.3:8090\n", "dashboard.auth", "not a loopback address"},
		{"dashboard:\n  address: nope\n", "dashboard.address", "host:port"},
		{"dashboard:\n  address: 127.0.0.1:8090\n  auth: {}\n", "dashboard.auth", "set one of basic"},
		{"dashboard:\n  auth:\n    basic: {user: a, password: b}\n    bearer: {token: c}\n", "dashboard.auth", "not both"},
		{"dashboard:\n  auth:\n    basic: {password: b}\n", "dashboard.auth.basic.user", "required"},
		{"dashboard:\n  auth:\n    basic: {user: a}\n", "dashboard.auth.basic.password", "required"},
		{"dashboard:\n  auth:\n    bearer: {token: \"\"}\n", "dashboard.auth.bearer.token", "required"},
		{"dashboard:\n  adress: 127.0.0.1:1\n", "dashboard.adress", "unknown key"},
	} {
		_, err := Parse([]byte(dashboardYAML(c.section)))
		if err == nil {
			t.Errorf("%q loaded", c.section)
			continue
		}
		if !strings.Contains(err.Error(), c.key+": ") || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%q: error %q, want %s: ...%s", c.section, err, c.key, c.reason)
		}
	}
}

// The annotated example of every key has a dashboard section.
func TestDashboardInFullExample(t *testing.T) {
	t.Setenv("DASHBOARD_PASSWORD", "")
	r, err := Load("testdata/full.rr.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := r.Dashboard
	if d.Address != "127.0.0.1:8090" || d.Auth == nil || d.Auth.Basic == nil || d.Auth.Basic.User != "ops" || d.Auth.Basic.Password != "change-me" {
		t.Errorf("dashboard = %+v", d)
	}
}
