#!/usr/bin/env bash
# End-to-end benchmark of the amqp driver with PHP echo workers against the
# RabbitMQ at $SUPERVISOR_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/):
# builds the supervisor, then, with jobs.pool.pipelining 1 and then 8 and
# otherwise default settings (prefetch 100, one slot per worker), alternates
# rounds of 20,000 jobs of 32 bytes consumed and acked through the
# supervisor (2 PHP echo workers) and by a plain amqp091-go consumer doing
# the same work per message (manual ack, the same prefetch, each message
# run on one of 2 PHP echo workers over the same pipes, the same
# pipelining) on the same queue, each round filled through the
# supervisor's PushBatch. Prints both in jobs/s, supervisor/plain, and
# the CPU µs per job of each.
# Flags go to bench/amqpbench (e.g. -jobs 50000 -workers 4 -pipelining 1
# -prefetch 10 -concurrency 16 -cpuprofile /tmp/amqp.prof).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/supervisor ./cmd/supervisor
go run ./bench/amqpbench -bin bin/supervisor "$@"
