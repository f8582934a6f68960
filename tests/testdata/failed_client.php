<?php
// Failed jobs through the PHP producer client:
//   php failed_client.php RPC list|show ID|retry ID...|remove-all
// prints the result as one line of JSON.
declare(strict_types=1);

require __DIR__ . '/../../php-client/autoload.php';

$jobs = new Pipevisor\Jobs($argv[1]);
$view = static fn (array $f): array => ['id' => $f['id'], 'pipeline' => $f['pipeline'], 'job' => $f['job'],
    'payload' => $f['payload'], 'headers' => (object) $f['headers'], 'attempts' => $f['attempts'], 'reason' => $f['reason'],
    'died' => $f['diedAt'] !== null];
$out = match ($argv[2]) {
    'list' => array_map($view, $jobs->failedList()),
    'show' => $view($jobs->failedShow($argv[3])),
    'retry' => $jobs->failedRetry(...array_slice($argv, 3)),
    'remove-all' => $jobs->failedRemoveAll(),
};
echo json_encode($out, JSON_THROW_ON_ERROR), "\n";
