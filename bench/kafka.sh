#!/usr/bin/env bash
# End-to-end benchmark of the kafka driver with PHP echo workers against a
# kfake cluster: builds the supervisor and tests/kfakecmd, pushes 50,000 jobs
# of 32 bytes through the supervisor into a 4-partition topic (not consumed
# yet), consumes them with a plain franz-go client that commits the same way
# (sync commits every 5ms, group "plain"), then resumes the pipeline and
# prints consume+commit throughput of both in jobs/s (until every job is
# acked and the group's committed offsets reached the end of every
# partition), supervisor/plain, and the supervisor's CPU µs per job.
# Flags go to bench/kafkabench (e.g. -jobs 100000 -partitions 8 -workers 4
# -ordering key; -keys 1 puts every job on one partition; -trace prints the
# acked count every 100ms while consuming).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/supervisor ./cmd/supervisor
go build -o bin/kfakecmd ./tests/kfakecmd
go run ./bench/kafkabench -bin bin/supervisor -kfake bin/kfakecmd "$@"
