<?php
// End-to-end test worker: what it does with a job depends on the job name.
// Every job start and finish is appended to the file named by E2E_LOG as
//   start <id> <attempt> <pid> <name>
//   done <id> <attempt> <reply>
declare(strict_types=1);

require __DIR__ . '/../../../php-client/autoload.php';

use Pipevisor\Consumer;

$log = getenv('E2E_LOG') ?: '/dev/null';
$consumer = new Consumer();
while ($task = $consumer->waitTask()) {
    $id = $task->getId();
    $attempt = $task->getAttempt();
    $name = $task->getName();
    file_put_contents($log, "start $id $attempt " . getmypid() . " $name\n", FILE_APPEND | LOCK_EX);
    switch ($name) {
        case 'nack-once':
            if ($attempt === 1) {
                $task->nack('first attempt fails', true);
                $reply = 'nack';
            } else {
                $task->ack();
                $reply = 'ack';
            }
            break;
        case 'always-fail':
            $task->nack('always fails', true);
            $reply = 'nack';
            break;
        case 'hang-once':
            if ($attempt === 1) {
                sleep(3600); // the test kills this worker with SIGKILL
            }
            $task->ack();
            $reply = 'ack';
            break;
        case 'slow':
            usleep(((int) $task->getPayload()) * 1000);
            $task->ack();
            $reply = 'ack';
            break;
        case 'requeue-once':
            if ($attempt === 1) {
                $task->withDelay(1)->withHeader('x-note', 'requeued')->requeue('try later');
                $reply = 'requeue';
            } else {
                $task->ack();
                $reply = 'ack:' . $task->getHeaderLine('x-note');
            }
            break;
        case 'record':
            // Reports the headers a producer set, to check they arrive, and
            // (written before the ack) the order jobs of one key ran in.
            file_put_contents($log, 'rec ' . $task->getHeaderLine('x-key') . ' ' . $task->getHeaderLine('x-seq') . "\n", FILE_APPEND | LOCK_EX);
            $task->ack();
            $reply = 'ack';
            break;
        default:
            $task->ack();
            $reply = 'ack';
    }
    file_put_contents($log, "done $id $attempt $reply\n", FILE_APPEND | LOCK_EX);
}
