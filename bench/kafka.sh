#!/usr/bin/env bash
# The kafka driver next to a plain franz-go consumer doing the same work,
# against a kfake cluster, with real PHP echo workers: builds the
# supervisor and tests/kfakecmd, then runs rounds (5 by default). Each
# round pushes 50,000 jobs of 32 bytes through the supervisor into a
# 4-partition topic (its pipeline paused), then both consume the same
# records, in turn (the order alternates), each in its own group, each
# until its committed offsets reach the end: the supervisor with 2 PHP echo
# workers, and a plain franz-go group consumer in a process of its own that
# sends each record to 2 PHP echo workers of its own over the same goridge
# pipe protocol (same pipelining, same ordering: one record of a partition
# at a time) and commits the way the driver does (each partition's done
# prefix, synchronously, at most every 5ms). It prints each round, the
# median jobs/s of both, supervisor/plain, and the CPU µs per record of
# the supervisor and of the plain consumer.
# Flags go to bench/kafkabench (e.g. -jobs 100000 -rounds 5 -partitions 8
# -workers 4 -pipelining 8 -ordering key; -keys 1 puts every job on one
# partition; -trace prints the acked count every 100ms while the
# supervisor consumes; -cpuprofile FILE and -plain-cpuprofile FILE profile
# either side over the whole run).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/supervisor ./cmd/supervisor
go build -o bin/kfakecmd ./tests/kfakecmd
go build -o bin/kafkabench ./bench/kafkabench
bin/kafkabench -bin bin/supervisor -kfake bin/kfakecmd "$@"
