<?php
// Failed-jobs test worker: until the file "ok" exists next to $E2E_LOG,
// each job fails the way its name says:
//   nack   NACK without redelivery ("bad input: <payload>"): dead at once
//   error  ERROR frame ("db down"): retried up to max_attempts
//   crash  writes a PHP fatal error to stderr and exits 70
//   hang   sleeps until exec_ttl kills it
// Once "ok" exists every job is acked. Each run appends
//   run <id> <attempt> <name> <fail|ack> <x-tenant header or ->
// to $E2E_LOG.
declare(strict_types=1);

require __DIR__ . '/../../../php-client/autoload.php';

use Pipevisor\Consumer;

$log = getenv('E2E_LOG') ?: '/dev/null';
$ok = dirname($log) . '/ok';

$consumer = new Consumer();
while ($task = $consumer->waitTask()) {
    $fail = !file_exists($ok);
    $tenant = $task->getHeaderLine('x-tenant');
    file_put_contents($log, sprintf("run %s %d %s %s %s\n", $task->getId(), $task->getAttempt(), $task->getName(),
        $fail ? 'fail' : 'ack', $tenant === '' ? '-' : $tenant), FILE_APPEND | LOCK_EX);
    if (!$fail) {
        $task->ack();
        continue;
    }
    switch ($task->getName()) {
        case 'nack':
            $task->nack('bad input: ' . $task->getPayload());
            break;
        case 'error':
            $task->error('db down');
            break;
        case 'crash':
            fwrite(STDERR, 'PHP Fatal error:  Allowed memory size exhausted in job ' . $task->getId() . "\n");
            exit(70);
        case 'hang':
            sleep(3600);
            break;
        default:
            $task->ack();
    }
}
