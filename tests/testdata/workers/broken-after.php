<?php
// End-to-end test worker standing for a deploy of broken code: once the file
// named by E2E_BROKEN exists, a new worker fails at boot the way PHP does on
// a syntax error; workers already running keep acking every job.
declare(strict_types=1);

require __DIR__ . '/../../../php-client/autoload.php';

$broken = getenv('E2E_BROKEN') ?: '';
if ($broken !== '' && file_exists($broken)) {
    fwrite(STDERR, "PHP Parse error:  syntax error, unexpected token \"}\" in /app/src/Job.php on line 42\n");
    exit(255);
}
$consumer = new Pipevisor\Consumer();
while ($task = $consumer->waitTask()) {
    $task->ack();
}
