package tests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// secretSentinel stands for a password, key or token in a config; no
// output of the supervisor may contain it.
const secretSentinel = "Sent1nelSecret"

// serveBriefly runs `supervisor serve -c cfg` until it exits or for d,
// then stops it, and returns all it printed.
func serveBriefly(t *testing.T, cfg string, d time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, testEnv.bin, "serve", "-c", cfg)
	cmd.Dir = testEnv.repoRoot
	cmd.Env = append(os.Environ(), "PIPEVISOR_TEST_SECRET="+secretSentinel)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	_ = cmd.Run()
	return out.String()
}

// Credentials never show in what validate, serve or a client command
// print, whatever goes wrong: an AMQP address that is not a URL, a
// refused login, a Kafka or SQS endpoint nobody answers on, invalid keys
// next to the secrets.
func TestSecretsNeverPrinted(t *testing.T) {
	requireTool(t, "php")
	closed := freeAddr(t)
	pipelines := map[string]string{
		"amqp not a URL": `amqp:
  addr: "amqp://app:Pa%s` + secretSentinel + `@127.0.0.1:5672/"
`,
		"amqp refused login": `amqp:
  addr: "amqp://guest:` + secretSentinel + `@127.0.0.1:5672/"
`,
		"kafka sasl, nobody listening": `kafka:
  brokers: ["` + closed + `"]
  sasl: {mechanism: SCRAM-SHA-512, username: app, password: "` + secretSentinel + `"}
  ping: {timeout: 1s}
`,
		"kafka sasl, bad mechanism": `kafka:
  brokers: ["` + closed + `"]
  sasl: {mechanism: nope, username: app, password: "${PIPEVISOR_TEST_SECRET}"}
`,
		"sqs keys, invalid pipeline": `sqs:
  key: AKIA` + secretSentinel + `
  secret: "` + secretSentinel + `"
  region: us-east-1
  endpoint: "http://` + closed + `"
`,
		"sqs keys, nobody listening": `sqs:
  key: AKIA` + secretSentinel + `
  secret: "` + secretSentinel + `"
  session_token: "` + secretSentinel + `"
  region: us-east-1
  endpoint: "http://` + closed + `"
`,
	}
	drivers := map[string]string{
		"amqp not a URL":               "amqp\n      config: {queue: q, routing_key: q}",
		"amqp refused login":           "amqp\n      config: {queue: q, routing_key: q}",
		"kafka sasl, nobody listening": "kafka\n      config: {consumer_options: {topics: [t]}, group_options: {group_id: g}}",
		"kafka sasl, bad mechanism":    "kafka\n      config: {consumer_options: {topics: [t]}}",
		"sqs keys, invalid pipeline":   "sqs\n      config: {queue: q, prefetch: 0x}",
		"sqs keys, nobody listening":   "sqs\n      config: {queue: q}",
	}
	for name, section := range pipelines {
		t.Run(name, func(t *testing.T) {
			cfg := writeConfig(t, `version: "3"
rpc:
  listen: tcp://`+freeAddr(t)+`
server:
  command: "`+behaveWorker+`"
`+section+`jobs:
  pool: {num_workers: 1, allocate_timeout: 10s, destroy_timeout: 5s}
  consume: ["default"]
  pipelines:
    default:
      driver: `+drivers[name]+`
`)
			var outs []string
			out, _ := runCLI(t, "validate", "-c", cfg)
			outs = append(outs, out)
			out, _ = runCLI(t, "push", "-c", cfg, "--pipeline", "default", "--job", "x", "--payload", "x")
			outs = append(outs, out)
			outs = append(outs, serveBriefly(t, cfg, 5*time.Second))
			for _, o := range outs {
				if strings.Contains(o, secretSentinel) {
					t.Fatalf("a secret was printed:\n%s", o)
				}
			}
			if strings.TrimSpace(strings.Join(outs, "")) == "" {
				t.Fatalf("nothing printed at all")
			}
		})
	}
}
