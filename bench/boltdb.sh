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
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/supervisor ./cmd/supervisor
go build -o bin/boltbench ./bench/boltbench
bin/boltbench -bin bin/supervisor "$@"
