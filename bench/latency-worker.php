<?php
// Benchmark worker: acks at once, then records push-to-ack latency. The job
// payload starts with the push time in Unix microseconds; one line
// "<microseconds>" per job goes to the file named by BENCH_LATENCY_LOG.
declare(strict_types=1);

require_once __DIR__ . '/../php-client/autoload.php';

$out = fopen(getenv('BENCH_LATENCY_LOG') ?: 'php://stderr', 'ab');
$consumer = new Pipevisor\Consumer();
while ($task = $consumer->waitTask()) {
    $task->ack();
    $now = (int) (microtime(true) * 1e6);
    fwrite($out, ($now - (int) $task->getPayload()) . "\n");
}
fclose($out);
