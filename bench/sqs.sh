#!/usr/bin/env bash
# End-to-end benchmark of the sqs driver with PHP echo workers against an
# SQS emulator (never AWS: dummy credentials, the endpoint always set):
# moto's server started on a free 127.0.0.1 port, or the emulator at
# $SQS_ENDPOINT / -endpoint (fauxqs, ElasticMQ). Builds the supervisor, then
# alternates rounds of 2,000 jobs of 32 bytes received and deleted through
# the supervisor (2 PHP echo workers, prefetch 10) and by a plain
# aws-sdk-go-v2 consumer (ReceiveMessage of 10 + DeleteMessageBatch) on the
# same queue, each round filled through the supervisor's PushBatch. Prints
# both in jobs/s, supervisor/plain, and the supervisor's CPU µs per job.
# The emulator is the bound: moto answers tens to hundreds of messages/s,
# so the plain consumer's figure is the ceiling, not the supervisor's cost.
# Flags go to bench/sqsbench (e.g. -jobs 5000 -workers 4 -concurrency 20).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/supervisor ./cmd/supervisor
go run ./bench/sqsbench -bin bin/supervisor "$@"
