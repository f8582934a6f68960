package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `supervisor help` lists the commands, `help COMMAND` shows its options,
// and an unknown command is an error that lists the commands.
func TestHelpAndUnknownCommands(t *testing.T) {
	out, code := runCLI(t, "help")
	if code != 0 || !strings.Contains(out, "COMMANDS:") || !strings.Contains(out, "validate") {
		t.Fatalf("help: exit %d %q", code, out)
	}
	out, code = runCLI(t, "help", "jobs", "pause")
	if code != 0 || !strings.Contains(out, "supervisor jobs pause") || !strings.Contains(out, "--rpc") {
		t.Fatalf("help jobs pause: exit %d %q", code, out)
	}
	out, code = runCLI(t, "sevre")
	if code != 2 || !strings.Contains(out, `unknown command "sevre"`) || !strings.Contains(out, "serve") || !strings.Contains(out, "workers") {
		t.Fatalf("unknown command: exit %d %q", code, out)
	}
}

// The bash completion script loads in bash and completes command paths
// and the flags of the command reached; zsh and fish scripts and the man
// page are printed.
func TestCompletionAndManPage(t *testing.T) {
	requireTool(t, "bash")
	script, code := runCLI(t, "completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash: exit %d %q", code, script)
	}
	file := filepath.Join(t.TempDir(), "supervisor.bash")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		cmd := exec.Command("bash", "--norc", "-c", `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _supervisor; echo "${COMPREPLY[*]}"`,
			"bash", file)
		cmd.Args = append(cmd.Args, words...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, c := range []struct {
		words []string
		want  string
	}{
		{[]string{"supervisor", "jo"}, "jobs"},
		{[]string{"supervisor", "jobs", "re"}, "resume"},
		{[]string{"supervisor", "jobs", "pause", "--r"}, "--rpc"},
		{[]string{"supervisor", "workers", "--int"}, "--interactive --interval"},
		{[]string{"supervisor", "-c", "x.yaml", "val"}, "validate"},
	} {
		if got := complete(c.words...); got != c.want {
			t.Errorf("completing %q = %q, want %q", c.words, got, c.want)
		}
	}
	for _, shell := range []string{"zsh", "fish"} {
		if out, code := runCLI(t, "completion", shell); code != 0 || !strings.Contains(out, "supervisor") {
			t.Errorf("completion %s: exit %d %q", shell, code, out)
		}
	}
	if out, code := runCLI(t, "completion", "tcsh"); code != 2 {
		t.Errorf("completion tcsh: exit %d %q, want 2", code, out)
	}
	if out, code := runCLI(t, "man"); code != 0 || !strings.Contains(out, ".TH supervisor") || !strings.Contains(out, "validate") {
		t.Errorf("man: exit %d %q", code, out)
	}
}
