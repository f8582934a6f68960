#!/usr/bin/env bash
# End-to-end benchmark of the kafka driver with PHP echo workers against a
# kfake cluster: builds the supervisor and tests/kfakecmd, pushes 50,000 jobs
# of 32 bytes through the supervisor into a 4-partition topic (not consumed
# yet), then resumes the pipeline and prints consume+commit throughput in
# jobs/s (resume until every job is acked and the group's committed offsets
# reached the end of every partition) and the supervisor's CPU µs per job.
# Flags go to bench/kafkabench (e.g. -jobs 100000 -partitions 8 -workers 4
# -ordering key; -keys 1 puts every job on one partition; -trace prints the
# acked count every 100ms while consuming).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/supervisor ./cmd/supervisor
go build -o bin/kfakecmd ./tests/kfakecmd
go run ./bench/kafkabench -bin bin/supervisor -kfake bin/kfakecmd "$@"
