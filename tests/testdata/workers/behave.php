<?php
// End-to-end test worker: what it does with a job depends on the job name.
// Every job start and finish is appended to the file named by E2E_LOG as
//   start <id> <attempt> <pid> <name>
//   done <id> <attempt> <reply>
// Jobs named kafka-* also append, before they reply,
//   kjob <id> <attempt> <partition> <offset> <pid> <unix-ms>
// with the Kafka position the job context carries. Jobs named amqp-* append,
// before they reply,
//   ajob <id> <attempt> <unix-ms> <payload> <x-note header or ->
// Jobs named sqs-* append, before they reply,
//   sjob <id> <attempt> <unix-ms>
declare(strict_types=1);

require __DIR__ . '/../../../php-client/autoload.php';

use Pipevisor\Consumer;

$log = getenv('E2E_LOG') ?: '/dev/null';

function kafkaLog(string $log, Pipevisor\Task $task): void
{
    $line = sprintf("kjob %s %d %s %s %d %d\n", $task->getId(), $task->getAttempt(),
        $task->getPartition() ?? '-', $task->getOffset() ?? '-', getmypid(), (int) (microtime(true) * 1000));
    file_put_contents($log, $line, FILE_APPEND | LOCK_EX);
}

function amqpLog(string $log, Pipevisor\Task $task): void
{
    $note = $task->getHeaderLine('x-note');
    $line = sprintf("ajob %s %d %d %s %s\n", $task->getId(), $task->getAttempt(),
        (int) (microtime(true) * 1000), $task->getPayload(), $note === '' ? '-' : $note);
    file_put_contents($log, $line, FILE_APPEND | LOCK_EX);
}

function sqsLog(string $log, Pipevisor\Task $task): void
{
    $line = sprintf("sjob %s %d %d\n", $task->getId(), $task->getAttempt(), (int) (microtime(true) * 1000));
    file_put_contents($log, $line, FILE_APPEND | LOCK_EX);
}

$children = []; // processes jobs leave running
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
        case 'nack-first-run':
            // Dies (NACK without redelivery) the first time any worker runs
            // this job id, whatever the attempt number says; acks after.
            $mark = dirname($log) . '/died-' . bin2hex($id);
            if (!file_exists($mark)) {
                touch($mark);
                $task->nack('first run fails');
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
        case 'crash-once':
            if ($attempt === 1) {
                exit(70); // the job takes its worker down with it
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
        case 'kafka-ack':
            kafkaLog($log, $task);
            $task->ack();
            $reply = 'ack';
            break;
        case 'kafka-slow':
            usleep(((int) $task->getPayload()) * 1000);
            kafkaLog($log, $task);
            $task->ack();
            $reply = 'ack';
            break;
        case 'kafka-hang-first':
            // Hangs the first time any worker runs this job id (the test
            // kills it with SIGKILL), whatever the attempt number says: a
            // restarted supervisor may count attempts from 1 again.
            kafkaLog($log, $task);
            $mark = dirname($log) . '/hung-' . bin2hex($id);
            if (!file_exists($mark)) {
                touch($mark);
                sleep(3600);
            }
            $task->ack();
            $reply = 'ack';
            break;
        case 'kafka-nack-delay':
            // Asks for a retry in 1s on its first attempt, acks after.
            kafkaLog($log, $task);
            if ($attempt === 1) {
                $task->withDelay(1)->nack('retry in 1s', true);
                $reply = 'nack';
            } else {
                $task->ack();
                $reply = 'ack';
            }
            break;
        case 'amqp-order':
            // Nacks the job whose payload is "21" once, with redelivery
            // and no delay (an in-place requeue); acks everything else.
            amqpLog($log, $task);
            if ($task->getPayload() === '21' && $attempt === 1) {
                $task->nack('21 fails once', true);
                $reply = 'nack';
            } else {
                $task->ack();
                $reply = 'ack';
            }
            break;
        case 'amqp-requeue-delay':
            // Requeues with a 2s delay and a new header once, acks after.
            amqpLog($log, $task);
            if ($attempt === 1) {
                $task->withDelay(2)->withHeader('x-note', 'requeued')->requeue('try in 2s');
                $reply = 'requeue';
            } else {
                $task->ack();
                $reply = 'ack:' . $task->getHeaderLine('x-note');
            }
            break;
        case 'amqp-fail-delay':
            // Always asks for a retry in 1s: retries go through the delay
            // queue until the job is dead.
            amqpLog($log, $task);
            $task->withDelay(1)->nack('always fails, retry in 1s', true);
            $reply = 'nack';
            break;
        case 'sqs-record':
            // As record, after a random pause of up to 20ms: jobs handed
            // out together finish in a random order.
            usleep(random_int(0, 20000));
            file_put_contents($log, 'rec ' . $task->getHeaderLine('x-key') . ' ' . $task->getHeaderLine('x-seq') . "\n", FILE_APPEND | LOCK_EX);
            $task->ack();
            $reply = 'ack';
            break;
        case 'sqs-nack-delay':
            // Asks for a retry in 2s on its first attempt, acks after.
            sqsLog($log, $task);
            if ($attempt === 1) {
                $task->withDelay(2)->nack('retry in 2s', true);
                $reply = 'nack';
            } else {
                $task->ack();
                $reply = 'ack';
            }
            break;
        case 'read-stdin':
            // Reads its stdin as a job or a library might: the Consumer has
            // pointed fd 0 at /dev/null, so all three see end of file.
            $seen = [fgets(STDIN), file_get_contents('php://stdin'), shell_exec('cat')];
            file_put_contents($log, "stdin $id " . implode(' ', array_map(static fn ($v) => var_export($v, true), $seen)) . "\n", FILE_APPEND | LOCK_EX);
            $task->ack();
            $reply = 'ack';
            break;
        case 'leave-child':
            // Leaves `sleep 60` running (inheriting fd 0, 1 and 2, never
            // proc_close()d) and logs "child <id> <pid>".
            $children[] = $child = proc_open(['sleep', '60'], [], $pipes);
            file_put_contents($log, "child $id " . proc_get_status($child)['pid'] . "\n", FILE_APPEND | LOCK_EX);
            $task->ack();
            $reply = 'ack';
            break;
        default:
            $task->ack();
            $reply = 'ack';
    }
    file_put_contents($log, "done $id $attempt $reply\n", FILE_APPEND | LOCK_EX);
}
