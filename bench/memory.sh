#!/usr/bin/env bash
# End-to-end benchmark of the memory driver with 2 PHP echo workers: builds the
# supervisor, pushes 100,000 jobs of 32 bytes with PushBatch(1000) and prints
# jobs/s (first push to last ack) and supervisor CPU µs per job (user and
# kernel; the median of 3 rounds, with their range), the same for the same
# jobs sent straight to the same workers with no supervisor (the pipe round
# trip alone: what this machine charges any supervisor per job), RSS with
# 100,000 jobs queued, and p50/p99 push-to-ack latency at half the measured
# rate. It runs twice: with jobs.pool.pipelining 1 (the default: one job
# per worker at a time) and 8 (eight written ahead of the replies); pass
# -pipelining N to run only that.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/supervisor ./cmd/supervisor
go build -o bin/membench ./bench/membench
if [[ " $* " == *" -pipelining"* ]]; then
	bin/membench -bin bin/supervisor "$@"
else
	# One job per worker at a time (the default), then 8 written ahead
	# (jobs.pool.pipelining: 8).
	bin/membench -bin bin/supervisor -pipelining 1 "$@"
	echo
	bin/membench -bin bin/supervisor -pipelining 8 "$@"
fi
