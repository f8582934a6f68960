<?php

/**
 * The smallest Pipevisor worker: acks every job at once. Used by the
 * benchmarks to measure the supervisor, not PHP.
 *
 *     supervisor serve -c examples/.rr.yaml   # with server.command "php examples/echo-worker.php"
 */

declare(strict_types=1);

require_once __DIR__ . '/../php-client/autoload.php';

$consumer = new Pipevisor\Consumer();
while ($task = $consumer->waitTask()) {
    $task->ack();
}
