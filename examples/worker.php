<?php

/**
 * Example Pipevisor worker, run by examples/.rr.yaml.
 *
 * It acks every job, except when the job asks for another outcome with the
 * "x-outcome" header (set it with `supervisor push --header x-outcome=nack`):
 *
 *   x-outcome: nack      nack without redelivery: the job goes to the dead letter
 *   x-outcome: retry     nack with redelivery after x-delay seconds (default 0);
 *                        counts an attempt, dead after retry.max_attempts
 *   x-outcome: requeue   requeue after x-delay seconds with the header
 *                        x-requeued-by set to this worker's pid; counts an
 *                        attempt, so it too ends dead after retry.max_attempts
 *   x-outcome: fail      throw an exception, which the loop catches and nacks
 *                        with redelivery (the same as "retry")
 *   x-outcome: retry-once  nack with redelivery on the first attempt, ack on the next
 *
 * Anything the job prints goes to STDERR (the Consumer redirects PHP output),
 * where the supervisor logs it; STDOUT belongs to the protocol.
 */

declare(strict_types=1);

require_once __DIR__ . '/../php-client/autoload.php';

use Pipevisor\Consumer;
use Pipevisor\Task;

/**
 * Your job handler. Throw to fail the job.
 */
function handle(Task $task): void
{
    if ($task->getHeaderLine('x-outcome') === 'fail') {
        throw new RuntimeException(sprintf('job %s asked to fail', $task->getId()));
    }
    // Real work goes here, e.g. dispatch on $task->getName() with $task->getPayload().
}

$consumer = new Consumer();
while ($task = $consumer->waitTask()) {
    $delay = (int) $task->getHeaderLine('x-delay');
    try {
        switch ($task->getHeaderLine('x-outcome')) {
            case 'nack':
                $task->nack('the job asked to be nacked');
                break;
            case 'retry':
                $task->withDelay($delay)->nack('the job asked to be retried', redelivery: true);
                break;
            case 'retry-once':
                if ($task->getAttempt() === 1) {
                    $task->nack('first attempt of a retry-once job', redelivery: true);
                } else {
                    $task->ack();
                }
                break;
            case 'requeue':
                $task->withDelay($delay)
                    ->withHeader('x-requeued-by', (string) getmypid())
                    ->requeue('the job asked to be requeued');
                break;
            default:
                handle($task);
                $task->ack();
        }
    } catch (Throwable $e) {
        // An exception escaping the loop would kill the worker (the
        // supervisor would then retry the job with backoff); deciding here
        // keeps the worker alive.
        fwrite(STDERR, sprintf("job %s failed: %s\n", $task->getId(), $e->getMessage()));
        $task->nack($e, redelivery: true);
    }
}
