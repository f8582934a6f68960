package tests

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/pipevisor/pipevisor/consumer"
)

// dashPassword is the dashboard's basic-auth password; no page may show it.
const dashPassword = "dash-S3NTINEL-pw"

// chromiumPath finds Debian's chromium (scripts/setup.sh installs it). In
// CI a missing browser fails the test; elsewhere it skips.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	requireTool(t, "chromium")
	return ""
}

// eventually polls cond every 50ms until it returns "" (done) or timeout
// passes; then the test fails with cond's last answer.
func eventually(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %s", timeout, why)
		}
		<-tick.C
	}
}

// pageRow is one pipeline row of the overview as the browser shows it.
type pageRow struct {
	State   string `json:"state"`
	Ready   string `json:"ready"`
	Running string `json:"running"`
	Delayed string `json:"delayed"`
	Dead    string `json:"dead"`
}

// readOverview returns the rows of the overview table by pipeline.
const readOverview = `(() => {
  const out = {};
  for (const tr of document.querySelectorAll('#pipelines tr[data-pipeline]')) {
    const f = (k) => tr.querySelector('[data-field="' + k + '"]');
    out[tr.dataset.pipeline] = { state: f('state').dataset.value, ready: f('ready').textContent,
      running: f('running').textContent, delayed: f('delayed').textContent, dead: f('dead').textContent };
  }
  return JSON.stringify(out);
})()`

// shown is how the overview prints a count of jobs stat (-1: unknown).
func shown(n int64) string {
	if n < 0 {
		return "–"
	}
	return fmt.Sprint(n)
}

func shownState(st pipelineStat) string {
	if st.Consuming {
		return "consuming"
	}
	return "paused"
}

// The dashboard of a running supervisor, in headless Chromium: the
// overview shows every pipeline with the numbers of `jobs stat --json`;
// Pause and Resume on the page pause and resume the pipeline; the other
// pages show the workers, the dead jobs (retried and removed from the
// page) and the masked config; without
// the configured auth every page answers 401. A screenshot of each page
// is saved (to $DASHBOARD_SCREENSHOTS when set, else a temp dir).
func TestDashboardInBrowser(t *testing.T) {
	requireTool(t, "php")
	chrome := chromiumPath(t)
	log := filepath.Join(t.TempDir(), "e2e.log")
	addr := freeAddr(t)
	cfg := writeConfig(t, fmt.Sprintf(`version: "3"
rpc:
  listen: tcp://%s
server:
  command: %q
  env:
    E2E_LOG: %q
dashboard:
  address: %s
  auth:
    basic: {user: ops, password: %s}
jobs:
  shutdown_timeout: 5s
  pool:
    num_workers: 2
    allocate_timeout: 10s
    destroy_timeout: 5s
  consume: ["default"]
  pipelines:
    default:
      driver: memory
      retry: {max_attempts: 1}
    reports:
      driver: memory
`, freeAddr(t), behaveWorker, log, addr, dashPassword))
	s := startConsuming(t, cfg)
	base := "http://" + addr

	// Without the auth every page and action is refused.
	for _, p := range []string{"/", "/assets/app.js", "/api/overview", "/api/config", "/api/pipelines/default/pause"} {
		method := "GET"
		if strings.HasPrefix(p, "/api/pipelines/") {
			method = "POST"
		}
		req, _ := http.NewRequest(method, base+p, nil)
		if p == "/api/config" {
			req.SetBasicAuth("ops", "wrong")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s without auth = %d, want 401", method, p, resp.StatusCode)
		}
		if strings.Contains(string(body), dashPassword) {
			t.Errorf("%s %s echoes the password", method, p)
		}
	}

	var jobs []consumer.Job
	for i := range 4 {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("ok-%d", i), Name: "slow", Pipeline: "default", Payload: []byte("20")})
	}
	jobs = append(jobs,
		consumer.Job{ID: "bad-0", Name: "always-fail", Pipeline: "default", Payload: []byte(`{"order":0}`)},
		consumer.Job{ID: "flaky-0", Name: "nack-first-run", Pipeline: "default", Payload: []byte(`{"order":1}`)})
	for i := range 6 {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("rep-%d", i), Name: "slow", Pipeline: "reports", Payload: []byte("1")})
	}
	s.rpcPush(jobs, len(jobs))
	s.waitStat("default", 20*time.Second, func(st pipelineStat) bool { return st.Acked == 4 && st.Dead == 2 && st.Active == 0 })

	shots := os.Getenv("DASHBOARD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1280, 720))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelC := chromedp.NewContext(actx)
	defer cancelC()
	ctx, cancelT := context.WithTimeout(ctx, 50*time.Second)
	defer cancelT()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+dashPassword))
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(shots, "dashboard-"+name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	visible := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(sel)) }

	// Unauthenticated, the browser is refused too: Chromium answers the
	// 401 and its basic-auth challenge with ERR_INVALID_AUTH_CREDENTIALS
	// when it has no credentials to offer.
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+"/"))
	switch {
	case err != nil && !strings.Contains(err.Error(), "ERR_INVALID_AUTH_CREDENTIALS"):
		t.Fatalf("browser without auth: %v", err)
	case err == nil && resp.Status != http.StatusUnauthorized:
		t.Errorf("browser without auth: status %d, want 401", resp.Status)
	}
	if title, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.title`)); err != nil || title == "Pipevisor dashboard" {
		t.Errorf("browser without auth shows %q (%v)", title, err)
	}

	// The overview matches jobs stat.
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}}); err != nil {
		t.Fatal(err)
	}
	do("open the overview", chromedp.Navigate(base+"/#overview"), visible(`#pipelines tr[data-pipeline="reports"]`))
	matches := func() string {
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](readOverview))
		if err != nil {
			return err.Error()
		}
		var rows map[string]pageRow
		if err := json.Unmarshal([]byte(raw), &rows); err != nil {
			return err.Error()
		}
		for _, name := range []string{"default", "reports"} {
			st := s.stat(name)
			want := pageRow{State: shownState(st), Ready: shown(st.Ready), Running: shown(st.Active), Delayed: shown(st.Delayed), Dead: fmt.Sprint(st.Dead)}
			if rows[name] != want {
				return fmt.Sprintf("%s: page shows %+v, jobs stat %+v", name, rows[name], want)
			}
		}
		return ""
	}
	eventually(t, 10*time.Second, matches)
	if st := s.stat("reports"); st.Ready != 6 || st.Consuming {
		t.Fatalf("reports = %+v, want 6 ready and not consuming", st)
	}
	if st := s.stat("default"); st.Dead != 2 {
		t.Fatalf("default = %+v, want 2 dead", st)
	}
	shot("overview")

	// Pause from the page pauses the pipeline; jobs pushed meanwhile wait.
	do("click pause", chromedp.Click(chromedp.CSS(`button[data-action="pause"][data-pipeline="default"]`)))
	s.waitStat("default", 10*time.Second, func(st pipelineStat) bool { return !st.Consuming })
	s.rpcPush([]consumer.Job{{ID: "while-paused", Name: "slow", Pipeline: "default", Payload: []byte("1")}}, 1)
	if st := s.stat("default"); st.Ready != 1 || st.Acked != 4 {
		t.Fatalf("paused default = %+v, want the new job waiting", st)
	}
	do("see it paused", visible(`button[data-action="resume"][data-pipeline="default"]`))
	eventually(t, 10*time.Second, matches)
	do("click resume", chromedp.Click(chromedp.CSS(`button[data-action="resume"][data-pipeline="default"]`)))
	s.waitStat("default", 10*time.Second, func(st pipelineStat) bool { return st.Consuming && st.Acked == 5 })

	// The chart has both lines.
	do("open the chart", chromedp.Navigate(base+"/#chart"), chromedp.WaitReady(chromedp.CSS(`#line-jobs`)), chromedp.WaitReady(chromedp.CSS(`#line-wait`)))
	shot("chart")

	// The workers page shows both workers and the job one of them runs.
	s.rpcPush([]consumer.Job{{ID: "long-job", Name: "slow", Pipeline: "default", Payload: []byte("4000")}}, 1)
	do("open the workers", chromedp.Navigate(base+"/#workers"),
		chromedp.WaitVisible(chromedp.Search(`//table[@id="workers"]//td[@data-field="current_job"][text()="long-job"]`)))
	workers, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#workers tr[data-pid]').length`))
	if err != nil {
		t.Fatal(err)
	}
	if workers != 2 {
		t.Errorf("workers page lists %d workers, want 2", workers)
	}
	shot("workers")

	// The failed page lists the two dead jobs with their reasons; one
	// opens in full. Retrying the other from the page runs it again (acked,
	// gone from `jobs failed list`); Remove all, clicked twice, empties
	// the list.
	deadRow := func(id string) string { return `.card[data-pipeline="default"] tr[data-job="` + id + `"]` }
	do("open the failed jobs", chromedp.Navigate(base+"/#failed"),
		visible(deadRow("bad-0")), visible(deadRow("flaky-0")),
		chromedp.Click(chromedp.CSS(deadRow("bad-0"))),
		visible(`#failed-job`))
	if text := text(deadRow("flaky-0") + ` [data-field="reason"]`); text != "first run fails" {
		t.Errorf("flaky-0 shows the reason %q, want the worker's NACK message", text)
	}
	if text := text("#failed-job"); !strings.Contains(text, `{"order":0}`) || !strings.Contains(text, "always fails") {
		t.Errorf("failed job shows %q, want its payload and reason", text)
	}
	if rows := s.failedList(); len(rows) != 2 {
		t.Fatalf("jobs failed list = %+v, want bad-0 and flaky-0", rows)
	}
	shot("failed")

	acked := s.stat("default").Acked
	do("retry flaky-0", chromedp.Click(chromedp.CSS(deadRow("flaky-0")+` button[data-action="retry"]`)),
		visible(`#failed-notice`))
	s.waitStat("default", 10*time.Second, func(st pipelineStat) bool { return st.Acked == acked+1 })
	if rows := s.failedList(); len(rows) != 1 || rows[0].ID != "bad-0" {
		t.Errorf("after retry jobs failed list = %+v, want bad-0 alone", rows)
	}
	do("see flaky-0 gone", chromedp.WaitNotPresent(chromedp.CSS(deadRow("flaky-0"))))
	removeAll := `.card[data-pipeline="default"] button[data-action="remove-all"]`
	do("click remove all once", chromedp.Click(chromedp.CSS(removeAll)), visible(removeAll+`.danger`))
	if rows := s.failedList(); len(rows) != 1 {
		t.Errorf("one click on Remove all changed jobs failed list: %+v", rows)
	}
	do("confirm remove all", chromedp.Click(chromedp.CSS(removeAll+`.danger`)),
		visible(`.card[data-pipeline="default"] [data-empty]`))
	if rows := s.failedList(); len(rows) != 0 {
		t.Errorf("after remove jobs failed list = %+v, want none", rows)
	}
	if text := text("#failed-notice"); !strings.Contains(text, "Removed 1 job of default") {
		t.Errorf("notice after remove = %q", text)
	}
	if st := s.stat("default"); st.Acked != acked+1 {
		t.Errorf("default after remove = %+v, want bad-0 not run", st)
	}

	// The config page masks the dashboard's own password.
	do("open the config", chromedp.Navigate(base+"/#config"), visible(`#config-yaml`))
	if text := text("#config-yaml"); strings.Contains(text, dashPassword) || !strings.Contains(text, "password: '******'") || !strings.Contains(text, "reports:") {
		t.Errorf("config page:\n%s", text)
	}
	shot("config")
}

// Through the binary: with a bearer token every endpoint needs it, and
// no answer carries a configured secret; on every interface without auth
// the supervisor refuses to start, naming dashboard.auth.
func TestDashboardBearerAndSecrets(t *testing.T) {
	requireTool(t, "php")
	const token = "tok-S3NTINEL-bearer"
	addr := freeAddr(t)
	cfg := e2eConfig(t, behaveWorker, filepath.Join(t.TempDir(), "e2e.log"), 1, fmt.Sprintf(`amqp:
  addr: amqp://guest:S3NTINEL-amqp@127.0.0.1:5672/
sqs:
  key: S3NTINEL-key
  secret: S3NTINEL-secret
  session_token: S3NTINEL-session
  region: eu-west-1
dashboard:
  address: %s
  auth:
    bearer: {token: %s}
`, addr, token), "      driver: memory\n")
	// server.env of e2eConfig gets one more secret.
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), "  env:\n", "  env:\n    DB_PASSWORD: S3NTINEL-env\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startConsuming(t, cfg)
	s.rpcPush([]consumer.Job{{ID: "j1", Name: "slow", Pipeline: "default", Payload: []byte("1")}}, 1)
	s.waitStat("default", 10*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })

	get := func(path, auth string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, p := range []string{"/", "/assets/app.js", "/api/session", "/api/overview", "/api/history", "/api/workers", "/api/failed", "/api/config"} {
		if code, _ := get(p, ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s without the token = %d, want 401", p, code)
		}
		if code, _ := get(p, "Bearer wrong"); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token = %d, want 401", p, code)
		}
		code, body := get(p, "Bearer "+token)
		if code != http.StatusOK {
			t.Errorf("GET %s with the token = %d %s", p, code, body)
		}
		if strings.Contains(body, "S3NTINEL") {
			t.Errorf("GET %s shows a secret: %s", p, body)
		}
	}
	_, conf := get("/api/config", "Bearer "+token)
	for _, want := range []string{"amqp://guest:******@127.0.0.1:5672/", "DB_PASSWORD: '******'", "region: eu-west-1", "token: '******'"} {
		if !strings.Contains(conf, strings.ReplaceAll(want, "'", `\u0027`)) && !strings.Contains(conf, want) {
			t.Errorf("config lacks %q: %s", want, conf)
		}
	}
	var ov struct {
		Pipelines []struct {
			Name    string  `json:"name"`
			Samples int     `json:"samples"`
			P50     float64 `json:"p50_ms"`
		} `json:"pipelines"`
	}
	_, body := get("/api/overview", "Bearer "+token)
	if err := json.Unmarshal([]byte(body), &ov); err != nil || len(ov.Pipelines) != 1 || ov.Pipelines[0].Samples != 1 || ov.Pipelines[0].P50 <= 0 {
		t.Errorf("overview after one job = %s (%v)", body, err)
	}

	// On every interface without auth: no start.
	open := e2eConfig(t, behaveWorker, filepath.Join(t.TempDir(), "e2e.log"), 1, "dashboard:\n  address: 0.0.0.0:"+strings.Split(freeAddr(t), ":")[1]+"\n", "      driver: memory\n")
	out, code := runCLI(t, "serve", "-c", open)
	if code == 0 || !strings.Contains(out, "dashboard.auth") || !strings.Contains(out, "loopback") {
		t.Errorf("serve on 0.0.0.0 without auth: exit %d\n%s", code, out)
	}
}
