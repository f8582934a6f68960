<?php
// End-to-end test worker with a max-jobs guard, as real apps have: it acks
// jobs and exits on its own after 5 of them, without asking the supervisor
// first. It never reads a sixth job, so the jobs the supervisor wrote to it
// ahead of their turn (jobs.pool.pipelining) stay unread in its stdin.
// Every job is appended to the file named by E2E_LOG as
//   start <id> <attempt> <pid> <name>
//   done <id> <attempt> ack
declare(strict_types=1);

require __DIR__ . '/../../../php-client/autoload.php';

$log = getenv('E2E_LOG') ?: '/dev/null';
$consumer = new Pipevisor\Consumer();
$n = 0;
while ($task = $consumer->waitTask()) {
    $id = $task->getId();
    $attempt = $task->getAttempt();
    file_put_contents($log, "start $id $attempt " . getmypid() . ' ' . $task->getName() . "\n", FILE_APPEND | LOCK_EX);
    $task->ack();
    file_put_contents($log, "done $id $attempt ack\n", FILE_APPEND | LOCK_EX);
    if (++$n >= 5) {
        break;
    }
}
