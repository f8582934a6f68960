<?php
// End-to-end test producer: php producer.php RPC_ADDR MODE [ARGS...]
//   batch N KEYS   push N "record" jobs to "default" with keys k0..k(KEYS-1)
//                  and headers x-key, x-seq (the per-key sequence number)
//   declare NAME   declare a memory pipeline NAME, resume it, push 10 jobs
//   error          push to a pipeline that does not exist (expects an exception)
declare(strict_types=1);

require __DIR__ . '/../../php-client/autoload.php';

use Pipevisor\Jobs;
use Pipevisor\RPCException;

[$_, $addr, $mode] = $argv;
$jobs = new Jobs($addr);
switch ($mode) {
    case 'batch':
        $n = (int) $argv[3];
        $keys = (int) $argv[4];
        $seq = [];
        $batch = [];
        for ($i = 0; $i < $n; $i++) {
            $key = 'k' . ($i % $keys);
            $seq[$key] = ($seq[$key] ?? 0) + 1;
            $batch[] = ['pipeline' => 'default', 'job' => 'record', 'payload' => "job $i", 'key' => $key,
                'headers' => ['x-key' => $key, 'x-seq' => (string) $seq[$key]]];
            if (count($batch) === 100) {
                $jobs->pushBatch($batch);
                $batch = [];
            }
        }
        if ($batch !== []) {
            $jobs->pushBatch($batch);
        }
        echo "pushed $n\n";
        break;
    case 'declare':
        $name = $argv[3];
        $jobs->declare(['name' => $name, 'driver' => 'memory', 'priority' => 5, 'prefetch' => 100]);
        $jobs->resume($name);
        for ($i = 0; $i < 10; $i++) {
            $jobs->push($name, 'ack', "declared $i");
        }
        echo implode(',', $jobs->list()) . "\n";
        break;
    case 'error':
        try {
            $jobs->push('no-such-pipeline', 'ack', 'x');
            echo "no exception\n";
            exit(1);
        } catch (RPCException $e) {
            echo 'RPCException: ' . $e->getMessage() . "\n";
        }
        break;
    default:
        fwrite(STDERR, "unknown mode $mode\n");
        exit(2);
}
