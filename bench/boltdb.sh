#!/usr/bin/env bash
# End-to-end benchmark of the boltdb driver next to the memory driver, in
# the same run, with 2 PHP echo workers: builds the supervisor, pushes
# 100,000 jobs of 32 bytes with PushBatch(1000) to each driver, rounds
# alternating, and prints the median jobs/s of each (first push to last
# ack) and their ratio; then single pushes from 64 clients at once to the
# boltdb pipeline (group commit) next to one fsync per push on the same
# disk, and their ratio. Flags go to bench/boltbench (-pipelining 1 for
# one job per worker at a time; the default here is 8). The database file
# is written under the current directory (the disk a user's jobs.db is on).
# Last, the same comparison in process (no RPC: where the clients' and the
# RPC's CPU, not the disk, bounds the end-to-end single pushes on a fast
# disk): 32 publishers of one job each against one fsync per job.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/supervisor ./cmd/supervisor
go build -o bin/boltbench ./bench/boltbench
bin/boltbench -bin bin/supervisor "$@"
echo
echo "in process (go test -bench, consumer/boltjobs):"
out=$(go test -run '^$' -bench 'PublishSingle|FsyncPerJob' ./consumer/boltjobs)
group=$(awk '/^BenchmarkPublishSingle/ {for (i=1;i<NF;i++) if ($(i+1)=="jobs/s") print $i}' <<<"$out")
fsync=$(awk '/^BenchmarkFsyncPerJob/ {for (i=1;i<NF;i++) if ($(i+1)=="jobs/s") print $i}' <<<"$out")
echo "single publishes, group commit: ${group} jobs/s; one fsync per job: ${fsync} jobs/s; ratio $(awk -v g="$group" -v f="$fsync" 'BEGIN {printf "%.1fx", g/f}') (the goal: at least 10x)"
