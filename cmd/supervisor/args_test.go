package main

import (
	"strings"
	"testing"
)

func TestInterspersedMovesTrailingFlagsFirst(t *testing.T) {
	g := grammarOf(newApp())
	cases := []struct{ in, want string }{
		{"supervisor jobs pause default -c x.yaml", "supervisor jobs pause -c x.yaml default"},
		{"supervisor jobs destroy a b --json --rpc tcp://h:1", "supervisor jobs destroy --json --rpc tcp://h:1 a b"},
		{"supervisor jobs stat --json -c x", "supervisor jobs stat --json -c x"},
		{"supervisor push --pipeline p --job j", "supervisor push --pipeline p --job j"},
		{"supervisor serve --cpuprofile cpu.prof -c x", "supervisor serve --cpuprofile cpu.prof -c x"},
		{"supervisor validate -c x --unit u.service", "supervisor validate -c x --unit u.service"},
		{"supervisor jobs pause a -- -c", "supervisor jobs pause a -- -c"},
		{"supervisor --version", "supervisor --version"},
		// Pipelines named like commands are arguments, not commands.
		{"supervisor jobs pause reset --rpc tcp://127.0.0.1:7001", "supervisor jobs pause --rpc tcp://127.0.0.1:7001 reset"},
		{"supervisor jobs destroy jobs push -c x", "supervisor jobs destroy -c x jobs push"},
		{"supervisor help jobs", "supervisor help jobs"},
		{"supervisor", "supervisor"},
	}
	for _, c := range cases {
		got := strings.Join(g.interspersed(strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("interspersed(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
