<?php
// Benchmark worker: acks at once, then records push-to-ack latency. The job
// payload starts with the push time in Unix microseconds; one line
// "<microseconds>" per job goes to the file named by BENCH_LATENCY_LOG.
// Lines are kept in memory and written in blocks of 8192 and at the end, so
// that the worker does no more per job than the echo worker the throughput
// run measures (a write(2) per job would make "half the measured rate" a
// rate close to this worker's own limit).
declare(strict_types=1);

require_once __DIR__ . '/../php-client/autoload.php';

$out = fopen(getenv('BENCH_LATENCY_LOG') ?: 'php://stderr', 'ab');
$lines = [];
$consumer = new Pipevisor\Consumer();
while ($task = $consumer->waitTask()) {
    $task->ack();
    $lines[] = (int) (microtime(true) * 1e6) - (int) $task->getPayload();
    if (count($lines) === 8192) {
        fwrite($out, implode("\n", $lines) . "\n");
        $lines = [];
    }
}
if ($lines !== []) {
    fwrite($out, implode("\n", $lines) . "\n");
}
fclose($out);
