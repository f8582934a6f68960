<?php
// End-to-end test worker that uses the jobs RPC before its first job, as
// RoadRunner workers may: at start, before it answers the supervisor's
// handshake, it declares a memory pipeline "early-<pid>", resumes it and
// pushes 3 jobs there and 1 to "default". Then it acks every job and appends
//   done <id> <pipeline>
// to the file named by E2E_LOG.
declare(strict_types=1);

require __DIR__ . '/../../../php-client/autoload.php';

use Pipevisor\Consumer;
use Pipevisor\Jobs;

$log = getenv('E2E_LOG') ?: '/dev/null';
$jobs = new Jobs(); // RR_RPC, set by the supervisor
$mine = 'early-' . getmypid();
$jobs->declare(['name' => $mine, 'driver' => 'memory', 'priority' => 10, 'prefetch' => 100]);
$jobs->resume($mine);
for ($i = 0; $i < 3; $i++) {
    $jobs->push($mine, 'ping', "early $i");
}
$jobs->push('default', 'ping', 'from ' . $mine);
$stats = $jobs->stat();
fwrite(STDERR, sprintf("worker %d saw %d pipelines before its first job\n", getmypid(), count($stats)));

$consumer = new Consumer();
while ($task = $consumer->waitTask()) {
    file_put_contents($log, sprintf("done %s %s\n", $task->getId(), $task->getPipeline()), FILE_APPEND | LOCK_EX);
    $task->ack();
}
