<?php
// End-to-end test producer for RoadRunner's stat fields:
//   php rrstat.php RPC_ADDR memory NAME        declare a memory pipeline NAME (not in jobs.consume,
//                                              so paused), push 6 jobs, print its stat as JSON
//   php rrstat.php RPC_ADDR amqp NAME QUEUE    the same on RabbitMQ with queue QUEUE, 3 jobs
declare(strict_types=1);

require __DIR__ . '/../../php-client/autoload.php';

use Pipevisor\Jobs;
use Pipevisor\Queue\AMQPCreateInfo;
use Pipevisor\Queue\MemoryCreateInfo;

[$_, $addr, $mode, $name] = $argv;
$jobs = new Jobs($addr);
switch ($mode) {
    case 'memory':
        $jobs->create(new MemoryCreateInfo(name: $name, priority: 10, prefetch: 100));
        $n = 6;
        break;
    case 'amqp':
        $queue = $argv[4];
        $jobs->create(new AMQPCreateInfo(name: $name, queue: $queue, routingKey: $queue, deleteQueueOnStop: true));
        $n = 3;
        break;
    default:
        fwrite(STDERR, "unknown mode $mode\n");
        exit(2);
}
for ($i = 0; $i < $n; $i++) {
    $jobs->push($name, 'ack', "backlog $i");
}
echo json_encode($jobs->pipelineStat($name)), "\n";
