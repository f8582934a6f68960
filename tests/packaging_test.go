package tests

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestDockerfileAndCompose checks what can be checked without a container
// runtime: the Dockerfile has a golang build stage and a Debian slim
// runtime stage with php-cli that copies the binary from the build stage
// and runs as a non-root user; the compose file parses, builds that
// Dockerfile, waits for a healthy RabbitMQ and mounts a configuration that
// `supervisor validate` accepts.
func TestDockerfileAndCompose(t *testing.T) {
	dir := filepath.Join(testEnv.repoRoot, "packaging", "docker")
	raw, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms, users []string
	var joined strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		joined.WriteString(line + "\n")
		switch f := strings.Fields(line); {
		case len(f) > 0 && f[0] == "FROM":
			froms = append(froms, line)
		case len(f) > 0 && f[0] == "USER":
			users = append(users, f[1])
		}
	}
	if len(froms) != 2 ||
		!regexp.MustCompile(`^FROM golang:\S+ AS build$`).MatchString(froms[0]) ||
		!regexp.MustCompile(`^FROM debian:\S+-slim AS runtime$`).MatchString(froms[1]) {
		t.Errorf("stages %q, want a golang build stage then a debian slim runtime stage", froms)
	}
	if len(users) == 0 {
		t.Error("Dockerfile has no USER: the supervisor would run as root")
	} else if u := users[len(users)-1]; strings.HasPrefix(u, "root") || strings.HasPrefix(u, "0") {
		t.Errorf("final USER %q is root", u)
	}
	body := joined.String()
	for _, want := range []string{"php-cli", "COPY --from=build /out/supervisor /usr/local/bin/supervisor", "COPY examples/", "-X main.version="} {
		if !strings.Contains(body, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}

	raw, err = os.ReadFile(filepath.Join(dir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image string `yaml:"image"`
			Build struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
			DependsOn map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	rabbit, sup := compose.Services["rabbitmq"], compose.Services["supervisor"]
	if !strings.HasPrefix(rabbit.Image, "rabbitmq:") || len(rabbit.Healthcheck.Test) == 0 {
		t.Errorf("rabbitmq service %+v, want a rabbitmq image with a healthcheck", rabbit)
	}
	if _, err := os.Stat(filepath.Join(dir, sup.Build.Context, sup.Build.Dockerfile)); err != nil {
		t.Errorf("supervisor service builds %s/%s: %v", sup.Build.Context, sup.Build.Dockerfile, err)
	}
	if sup.DependsOn["rabbitmq"].Condition != "service_healthy" {
		t.Errorf("supervisor depends_on %+v, want rabbitmq service_healthy", sup.DependsOn)
	}
	var cfg string
	for _, v := range sup.Volumes {
		if src, dst, _ := strings.Cut(v, ":"); strings.HasPrefix(dst, "/etc/pipevisor/.rr.yaml") {
			cfg = filepath.Join(dir, src)
		}
	}
	if cfg == "" {
		t.Fatalf("supervisor volumes %q mount no /etc/pipevisor/.rr.yaml", sup.Volumes)
	}
	if out, code := runCLI(t, "validate", "-c", cfg); code != 0 {
		t.Errorf("validate %s: exit %d: %s", cfg, code, out)
	}
}

// TestPHPClientInstallsWithComposer installs php-client into a new project
// through a Composer path repository, with Packagist disabled and no
// network, and loads its classes through Composer's autoloader.
func TestPHPClientInstallsWithComposer(t *testing.T) {
	requireTool(t, "composer")
	requireTool(t, "php")
	proj := t.TempDir()
	composerJSON := `{
  "name": "acme/app",
  "require": {"pipevisor/pipevisor": "*@dev"},
  "repositories": [
    {"packagist.org": false},
    {"type": "path", "url": "` + filepath.Join(testEnv.repoRoot, "php-client") + `", "options": {"symlink": false}}
  ]
}`
	if err := os.WriteFile(filepath.Join(proj, "composer.json"), []byte(composerJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("composer", "install", "--no-interaction", "--no-progress")
	cmd.Dir = proj
	cmd.Env = append(os.Environ(), "COMPOSER_HOME="+t.TempDir(), "COMPOSER_DISABLE_NETWORK=1", "COMPOSER_ALLOW_SUPERUSER=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("composer install: %v\n%s", err, out)
	}
	php := exec.Command("php", "-r", `require "vendor/autoload.php";
foreach (["Pipevisor\\Consumer", "Pipevisor\\Jobs", "Pipevisor\\Task", "Pipevisor\\RPC"] as $c) { if (!class_exists($c)) { echo "missing $c\n"; exit(1); } }
echo "ok\n";`)
	php.Dir = proj
	if out, err := php.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("loading the client through vendor/autoload.php: %v\n%s", err, out)
	}
}

// TestPythonClientInstallsOffline installs python-client with pip, without
// an index or build isolation (setuptools from the system), into a target
// directory and imports it from there.
func TestPythonClientInstallsOffline(t *testing.T) {
	requireTool(t, "/usr/bin/python3")
	src := filepath.Join(t.TempDir(), "python-client")
	if err := os.CopyFS(src, os.DirFS(filepath.Join(testEnv.repoRoot, "python-client"))); err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	pip := exec.Command("/usr/bin/python3", "-m", "pip", "install", "--no-build-isolation", "--no-index", "--no-deps", "--target", target, src)
	pip.Env = append(os.Environ(), "PIP_NO_INPUT=1", "PIP_DISABLE_PIP_VERSION_CHECK=1")
	if out, err := pip.CombinedOutput(); err != nil {
		t.Fatalf("pip install: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(target, "pipevisor", "py.typed")); err != nil {
		t.Errorf("py.typed not installed: %v", err)
	}
	py := exec.Command("/usr/bin/python3", "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import pipevisor; print(pipevisor.__file__)", target)
	out, err := py.CombinedOutput()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), target) {
		t.Fatalf("import pipevisor from the install: %v %s", err, out)
	}
}

// TestReleaseScript builds both release binaries and checks that they are
// for amd64 and arm64 and that the amd64 one prints the version, commit
// and date stamped in.
func TestReleaseScript(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(testEnv.repoRoot, "scripts", "release.sh"), "9.8.7", out)
	cmd.Env = append(os.Environ(), "COMMIT=abc1234", "DATE=2026-01-02T03:04:05Z")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release.sh: %v\n%s", err, b)
	}
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		f, err := elf.Open(filepath.Join(out, "supervisor-9.8.7-linux-"+arch))
		if err != nil {
			t.Errorf("%s binary: %v", arch, err)
			continue
		}
		if f.Machine != machine {
			t.Errorf("%s binary is for %v", arch, f.Machine)
		}
		f.Close()
	}
	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if err != nil || strings.Count(string(sums), "supervisor-9.8.7-linux-") != 2 {
		t.Errorf("SHA256SUMS: %v %q", err, sums)
	}
	v, err := exec.Command(filepath.Join(out, "supervisor-9.8.7-linux-amd64"), "--version").CombinedOutput()
	if want := "supervisor version 9.8.7 (commit abc1234, built 2026-01-02T03:04:05Z)\n"; err != nil || string(v) != want {
		t.Errorf("--version: %v %q, want %q", err, v, want)
	}
}
