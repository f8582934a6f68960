package config_test

import (
	"fmt"

	"github.com/pipevisor/pipevisor/config"
)

func ExampleParse() {
	_, err := config.Parse([]byte(`version: "3"
server:
  command: php worker.php
jobs:
  pool:
    num_workers: two
  pipelines:
    orders:
      driver: memory
      retry: {max_attempts: 0}
      config: {prefech: 10}
`))
	for _, e := range config.Errors(err) {
		fmt.Println(e)
	}
	// Output:
	// jobs.pool.num_workers: cannot unmarshal !!str "two" into int (line 6)
	// jobs.pipelines.orders.retry.max_attempts: must be >= 1 (1 means no retries; got 0) (line 10)
	// jobs.pipelines.orders.config.prefech: unknown key (did you mean prefetch?) (line 11)
}

func ExamplePipelineFromDeclare() {
	p, err := config.PipelineFromDeclare(map[string]string{
		"name":     "reports",
		"driver":   "memory",
		"priority": "5",
		"prefetch": "50",
		"retry":    `{"max_attempts": 5, "backoff": {"initial": "2s"}}`,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Name, p.Driver, p.Priority, p.Memory.Prefetch, p.Retry.MaxAttempts, p.Retry.Backoff.Initial)
	// Output:
	// reports memory 5 50 5 2s
}
