package pool

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// maxTreeProcs bounds how many processes workerMemory visits per worker.
const maxTreeProcs = 256

// workerMemory returns the resident set size of pid plus that of every
// process below it, in bytes: a worker started through a wrapper
// (`sh -c "php worker.php"`) is measured with what PHP holds, and so is
// a child a worker forks. Pages a parent and its forked child share are
// counted in both, as each one's RSS counts them. With a single process
// this is its RSS, what RoadRunner's max_worker_memory compares. 0 when
// pid is gone.
func workerMemory(pid int) uint64 {
	var total uint64
	seen := map[int]bool{}
	queue := []int{pid}
	for len(queue) > 0 && len(seen) < maxTreeProcs {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		total += readRSS(p)
		queue = append(queue, childrenOf(p)...)
	}
	return total
}

// childrenOf lists the direct children of every thread of pid (empty when
// the kernel lacks /proc/<pid>/task/<tid>/children).
func childrenOf(pid int) []int {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}
