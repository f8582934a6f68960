<?php

declare(strict_types=1);

namespace Pipevisor\Tests;

use PHPUnit\Framework\TestCase;
use Pipevisor\Frame;
use Pipevisor\Jobs;
use Pipevisor\PushException;
use Pipevisor\Queue;
use Pipevisor\RPC;
use Pipevisor\RPCException;

/**
 * The producer against a fake supervisor: a real socket on which the test
 * plays the golden RPC replies of rpc/testdata and records the requests.
 */
final class JobsTest extends TestCase
{
    private const RPC_TESTDATA = __DIR__ . '/../../rpc/testdata';

    /** @var resource */
    private $server;
    /** @var resource accepted connection of the fake supervisor */
    private $conn;
    private string $sockPath = '';

    protected function tearDown(): void
    {
        foreach ([$this->conn ?? null, $this->server ?? null] as $s) {
            if (\is_resource($s)) {
                fclose($s);
            }
        }
        if ($this->sockPath !== '' && file_exists($this->sockPath)) {
            unlink($this->sockPath);
        }
    }

    /** Starts the fake supervisor and returns a connected Jobs client. */
    private function jobs(string $transport = 'unix', float $timeout = 5.0): Jobs
    {
        if ($transport === 'unix') {
            $this->sockPath = sys_get_temp_dir() . '/pipevisor-test-' . bin2hex(random_bytes(6)) . '.sock';
            $listen = 'unix://' . $this->sockPath;
        } else {
            $listen = 'tcp://127.0.0.1:0';
        }
        $server = stream_socket_server($listen, $errno, $errstr);
        self::assertIsResource($server, $errstr);
        $this->server = $server;
        $addr = $transport === 'unix' ? $listen : 'tcp://' . stream_socket_get_name($server, false);
        $jobs = new Jobs(new RPC($addr, $timeout));
        $jobs->getRPC()->connect();
        $conn = stream_socket_accept($server, 5);
        self::assertIsResource($conn);
        stream_set_timeout($conn, 5);
        $this->conn = $conn;

        return $jobs;
    }

    /** Reads exactly $n bytes the client sent. */
    private function readRequest(int $n): string
    {
        $buf = '';
        while (\strlen($buf) < $n) {
            $chunk = fread($this->conn, $n - \strlen($buf));
            self::assertNotFalse($chunk);
            self::assertNotSame('', $chunk, 'the client sent less than expected');
            $buf .= $chunk;
        }

        return $buf;
    }

    /** @return list<array<string, mixed>> */
    private static function vectors(): array
    {
        $json = @file_get_contents(self::RPC_TESTDATA . '/vectors.json');
        self::assertIsString($json, 'rpc/testdata/vectors.json is missing');

        return json_decode($json, true, 512, JSON_THROW_ON_ERROR)['vectors'];
    }

    private static function golden(string $file): string
    {
        $b = @file_get_contents(self::RPC_TESTDATA . '/' . $file);
        self::assertIsString($b, "rpc/testdata/$file is missing");

        return $b;
    }

    public function testGoldenRpcFramesInOrderOnOneConnection(): void
    {
        $jobs = $this->jobs();
        $calls = [
            'push' => function () use ($jobs): void {
                $id = $jobs->push('emails', 'App\\Jobs\\SendMail', '{"to":"a@example.com"}', [
                    'id' => '0f8fad5b-d9cb-469f-a165-70867728950e',
                    'headers' => ['x-tenant' => 'acme', 'x-trace' => ['a', 'b']],
                    'priority' => 5,
                    'delay' => 30,
                    'key' => 'customer-42',
                ]);
                self::assertSame('0f8fad5b-d9cb-469f-a165-70867728950e', $id);
            },
            'push_batch' => function () use ($jobs): void {
                $ids = $jobs->pushBatch([
                    ['pipeline' => 'images', 'job' => 'App\\Jobs\\Resize', 'payload' => 'img-1', 'id' => 'id-1', 'key' => 'album-7'],
                    ['pipeline' => 'images', 'job' => 'App\\Jobs\\Resize', 'payload' => 'img-2', 'id' => 'id-2', 'priority' => 1, 'autoAck' => true],
                ]);
                self::assertSame(['id-1', 'id-2'], $ids);
            },
            'stat' => function () use ($jobs): void {
                $stats = $jobs->stat();
                self::assertCount(2, $stats);
                // active is RoadRunner's backlog (memory: 3 queued + 2 running).
                self::assertSame(['pipeline' => 'emails', 'driver' => 'memory', 'queue' => 'emails', 'active' => 5, 'delayed' => 1,
                    'reserved' => 0, 'ready' => true, 'priority' => 10, 'queued' => 3, 'acked' => 120, 'retried' => 4,
                    'requeued' => 1, 'dead' => 2, 'consuming' => true, 'error' => '', 'running' => 2, 'waiting_delay' => 1], $stats[0]);
                self::assertSame('images', $stats[1]['pipeline']);
                self::assertSame(0, $stats[1]['delayed']);
                self::assertSame(-1, $stats[1]['waiting_delay']);
                self::assertSame(-1, $stats[1]['queued']);
                self::assertSame(0, $stats[1]['active']);
                self::assertFalse($stats[1]['consuming']);
                self::assertSame('paused', $stats[1]['error']);
            },
            'pause' => fn () => $jobs->pause('emails', 'images'),
            'pause_error' => function () use ($jobs): void {
                try {
                    $jobs->pause('nope');
                    self::fail('pause of an unknown pipeline did not throw');
                } catch (RPCException $e) {
                    self::assertSame('pipeline "nope" does not exist', $e->getMessage());
                    self::assertSame('jobs.Pause', $e->getMethod());
                    self::assertTrue($e->isServerError());
                }
            },
            'resume' => fn () => $jobs->resume('emails'),
            'list' => fn () => self::assertSame(['emails', 'images'], $jobs->list()),
            'declare' => fn () => $jobs->declare(['driver' => 'memory', 'name' => 'reports', 'priority' => 10, 'prefetch' => 100]),
            'destroy' => fn () => self::assertSame(['reports'], $jobs->destroy('reports')),
        ];

        $seen = [];
        foreach (self::vectors() as $v) {
            self::assertArrayHasKey($v['name'], $calls, "no client call for golden vector {$v['name']}");
            $request = self::golden($v['request']['file']);
            fwrite($this->conn, self::golden($v['reply']['file']));
            $calls[$v['name']]();
            self::assertSame(bin2hex($request), bin2hex($this->readRequest(\strlen($request))), "request bytes of {$v['name']}");
            $f = Frame::decode($request);
            self::assertSame([$v['seq'], \strlen($v['method'])], $f->options);
            self::assertSame($v['method'] . $v['request']['body'], $f->payload);
            $seen[] = $v['name'];
        }
        self::assertSame(array_keys($calls), $seen, 'every client call has a golden vector');
    }

    /**
     * The client's CreateInfo for each 4.3.0 case of rpc/testdata/sdk/declare.json,
     * built as a RoadRunner SDK user would build it.
     *
     * @return array<string, Queue\CreateInfo>
     */
    private static function sdkCreateInfos(): array
    {
        return [
            '4.3.0_memory' => new Queue\MemoryCreateInfo('mem-v430'),
            '4.3.0_amqp' => new Queue\AMQPCreateInfo('amqp-v430'),
            '4.3.0_amqp_full' => new Queue\AMQPCreateInfo('amqp-v430f', 3, 16, 'jobs-v430f', 'pipevisor.sdk', 'topics', 'jobs.v430f.#',
                false, true, false, true, true, true, ['x-max-priority' => 10], true, 5, false, false, 'worker-v430f'),
            '4.3.0_sqs' => new Queue\SQSCreateInfo('sqs-v430', 10, 10, 30, 5, 'jobs-v430', [
                'MessageRetentionPeriod' => 3600,
                'RedrivePolicy' => ['deadLetterTargetArn' => 'arn:aws:sqs:us-east-1:000000000000:dead-v430', 'maxReceiveCount' => 3],
            ], ['team' => 'billing']),
            '4.3.0_sqs_fifo' => new Queue\SQSCreateInfo('sqs-v430f', queue: 'jobs-v430f.fifo', messageGroupId: 'group-1', attributes: ['FifoQueue' => 'true']),
            '4.3.0_kafka' => new Queue\KafkaCreateInfo('kafka-v430',
                producerOptions: ['disable_idempotent' => false, 'max_message_bytes' => 1000012, 'request_timeout' => '10s',
                    'required_acks' => 'AllISRAck', 'compression_codec' => 'zstd'],
                consumerOptions: ['topics' => ['topic-v430'], 'consume_regexp' => false, 'max_fetch_message_size' => 50000,
                    'min_fetch_message_size' => 1, 'consumer_offset' => ['type' => 'AtStart', 'value' => 1]],
                groupOptions: ['group_id' => 'group-v430', 'block_rebalance_on_poll' => false]),
            '4.3.0_kafka_partitions' => new Queue\KafkaCreateInfo('kafka-v430p', autoCreateTopicsEnable: true,
                consumerOptions: ['topics' => [], 'consume_regexp' => false, 'max_fetch_message_size' => 50000,
                    'min_fetch_message_size' => 1, 'consumer_offset' => ['type' => 'AtStart', 'value' => 1],
                    'consume_partitions' => ['topic-v430p' => [['type' => 'AtStart'], ['type' => 'At', 'value' => 5]]]]),
        ];
    }

    /**
     * What RoadRunner's PHP SDK sends to create each pipeline, and jobs.Stat,
     * as golden JSON-codec frames checked against the Go server
     * (rpc/testdata/sdk/frames.json): the client sends the same bytes, for the
     * 4.3.0 cases from its own CreateInfo classes, and reads the backlog as
     * getPipelineStat() would.
     */
    public function testRoadRunnerSDKDeclareAndStatFrames(): void
    {
        $json = @file_get_contents(self::RPC_TESTDATA . '/sdk/frames.json');
        self::assertIsString($json, 'rpc/testdata/sdk/frames.json is missing');
        $frames = array_values(array_filter(json_decode($json, true, 512, JSON_THROW_ON_ERROR)['frames'], fn ($f) => $f['codec'] === 'json'));
        $sdk = json_decode((string) file_get_contents(self::RPC_TESTDATA . '/sdk/declare.json'), true, 512, JSON_THROW_ON_ERROR)['cases'];
        $pairs = [];
        foreach ($sdk as $c) {
            $pairs[$c['name']] = $c['pipeline'];
        }
        $infos = self::sdkCreateInfos();

        $jobs = $this->jobs();
        $created = 0;
        foreach ($frames as $f) {
            $request = hex2bin($f['request']['frame']);
            fwrite($this->conn, hex2bin($f['reply']['frame']));
            if ($f['name'] === 'stat') {
                $busy = $jobs->pipelineStat('sdk-busy');
                $statReply = Frame::decode(hex2bin($f['reply']['frame']));
                $statSeq = $f['seq'];
            } elseif (isset($infos[$f['name']])) {
                $info = $infos[$f['name']];
                $m = [];
                foreach ($pairs[$f['name']] as [$k, $v]) {
                    $m[$k] = $v;
                }
                self::assertSame($m['name'], $jobs->create($info));
                $created++;
            } else {
                $m = [];
                foreach ($pairs[$f['name']] as [$k, $v]) {
                    $m[$k] = $v;
                }
                $jobs->declare($m);
            }
            self::assertSame(bin2hex($request), bin2hex($this->readRequest(\strlen($request))), "request bytes of {$f['name']}");
        }
        self::assertSame(\count($infos), $created, 'every CreateInfo was sent');

        self::assertNotNull($busy);
        // RoadRunner's numbers: the backlog of the memory pipeline (5 queued + 1 running).
        self::assertSame(6, $busy['active']);
        self::assertTrue($busy['ready']);
        self::assertSame([5, 1], [$busy['queued'], $busy['running']]);
        // getPipelineStat() of another pipeline: the same reply, to the next call.
        fwrite($this->conn, Frame::encode($statReply->flags, [$statSeq + 1, 9], $statReply->payload));
        $rabbit = $jobs->pipelineStat('sdk-amqp');
        self::assertNotNull($rabbit);
        // RabbitMQ: 3 ready in the queue, 2 in its delay queues; paused.
        self::assertSame([3, 2, false], [$rabbit['active'], $rabbit['delayed'], $rabbit['ready']]);
        self::assertSame([3, 2], [$rabbit['queued'], $rabbit['waiting_delay']]);
    }

    public function testCreateInfoKeysAreThoseOfTheRoadRunnerSDK(): void
    {
        $sdk = json_decode((string) file_get_contents(self::RPC_TESTDATA . '/sdk/declare.json'), true, 512, JSON_THROW_ON_ERROR)['cases'];
        $want = [];
        foreach ($sdk as $c) {
            $want[$c['name']] = array_column($c['pipeline'], 0);
        }
        foreach (self::sdkCreateInfos() as $name => $info) {
            self::assertSame($want[$name], array_keys($info->toArray()), $name);
        }
        $this->expectException(\InvalidArgumentException::class);
        new Queue\MemoryCreateInfo('', 1);
    }

    public function testGeneratedIdsAreUuid4AndBodiesOmitZeroFields(): void
    {
        $jobs = $this->jobs('tcp');
        $reply = Frame::encode(Frame::CODEC_JSON, [1, 9], 'jobs.Push{}');
        fwrite($this->conn, $reply);

        $id = $jobs->push('default', 'Ping', '');

        self::assertMatchesRegularExpression('/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/', $id);
        $sent = Frame::decode($this->readRequest(12 + 8 + 9 + \strlen('{"job":{"job":"Ping","id":"' . $id . '","options":{"pipeline":"default"}}}')));
        self::assertSame('jobs.Push{"job":{"job":"Ping","id":"' . $id . '","options":{"pipeline":"default"}}}', $sent->payload);
    }

    public function testAReplyForAnotherSequenceIsRejectedAndTheClientReconnects(): void
    {
        $jobs = $this->jobs();
        fwrite($this->conn, Frame::encode(Frame::CODEC_JSON, [7, 9], 'jobs.List{}'));

        try {
            $jobs->list();
            self::fail('a reply with the wrong seq was accepted');
        } catch (RPCException $e) {
            self::assertStringContainsString('does not answer request 1', $e->getMessage());
            self::assertFalse($e->isServerError());
        }

        // The client dropped the connection; the next call dials again.
        $jobs->getRPC()->connect();
        $conn = stream_socket_accept($this->server, 5);
        self::assertIsResource($conn);
        fwrite($conn, Frame::encode(Frame::CODEC_JSON, [2, 9], 'jobs.List{"pipelines":["x"]}'));
        self::assertSame(['x'], $jobs->list());
        fclose($conn);
    }

    public function testTheServerClosingTheConnectionIsAnRpcException(): void
    {
        $jobs = $this->jobs();
        fclose($this->conn);

        $this->expectException(RPCException::class);
        $this->expectExceptionMessage('jobs.Stat');
        $jobs->stat();
    }

    public function testASilentServerTimesOut(): void
    {
        $jobs = $this->jobs('tcp', 0.2);
        $start = microtime(true);

        try {
            $jobs->list();
            self::fail('no timeout');
        } catch (RPCException $e) {
            self::assertStringContainsString('timed out', $e->getMessage());
        }
        self::assertLessThan(3.0, microtime(true) - $start);
    }

    public function testNothingListeningSaysSo(): void
    {
        $jobs = new Jobs('unix://' . sys_get_temp_dir() . '/pipevisor-nobody-' . bin2hex(random_bytes(6)) . '.sock');

        $this->expectException(RPCException::class);
        $this->expectExceptionMessage('is the supervisor running?');
        $jobs->list();
    }

    public function testAnEmptyTcpHostIsLocalhost(): void
    {
        // The supervisor passes rpc.listen on in RR_RPC as it is, and ":6001" listens on every interface.
        $server = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
        self::assertIsResource($server, $errstr);
        $this->server = $server;
        $port = parse_url('tcp://' . stream_socket_get_name($server, false), PHP_URL_PORT);
        $old = getenv('RR_RPC');
        putenv("RR_RPC=tcp://:$port");
        try {
            $jobs = new Jobs();
        } finally {
            putenv($old === false ? 'RR_RPC' : "RR_RPC=$old");
        }
        $jobs->getRPC()->connect();
        $conn = stream_socket_accept($server, 5);
        self::assertIsResource($conn, 'the client did not connect to 127.0.0.1');
        $this->conn = $conn;
    }

    public function testAddressComesFromRrRpc(): void
    {
        $old = getenv('RR_RPC');
        putenv('RR_RPC=unix:///run/pipevisor.sock');
        try {
            self::assertSame('unix:///run/pipevisor.sock', (new Jobs())->getRPC()->getAddress());
            putenv('RR_RPC');
            self::assertSame('tcp://127.0.0.1:6001', (new Jobs())->getRPC()->getAddress());
        } finally {
            putenv($old === false ? 'RR_RPC' : "RR_RPC=$old");
        }
    }

    /** @return iterable<string, array{callable(Jobs): mixed, string}> */
    public static function invalidCalls(): iterable
    {
        yield 'unknown option' => [fn (Jobs $j) => $j->push('p', 'J', '', ['delay_seconds' => 1]), 'unknown push option "delay_seconds"'];
        yield 'negative delay' => [fn (Jobs $j) => $j->push('p', 'J', '', ['delay' => -1]), 'delay must be >= 0'];
        yield 'string priority' => [fn (Jobs $j) => $j->push('p', 'J', '', ['priority' => '5']), 'priority: int'];
        yield 'empty pipeline' => [fn (Jobs $j) => $j->push('', 'J', ''), 'pipeline name is empty'];
        yield 'non-string header' => [fn (Jobs $j) => $j->push('p', 'J', '', ['headers' => ['a' => 1]]), 'header "a"'];
        yield 'batch without payload' => [fn (Jobs $j) => $j->pushBatch([['pipeline' => 'p', 'job' => 'J']]), '"payload" must be a string'];
        yield 'declare object' => [fn (Jobs $j) => $j->declare(['name' => new \stdClass()]), 'declare key "name"'];
    }

    /** @dataProvider invalidCalls */
    public function testInvalidArgumentsAreRejectedBeforeAnythingIsSent(callable $call, string $message): void
    {
        $jobs = new Jobs('tcp://127.0.0.1:1'); // never dialled

        $this->expectException(\InvalidArgumentException::class);
        $this->expectExceptionMessage($message);
        $call($jobs);
    }

    public function testAnEmptyBatchSendsNothing(): void
    {
        self::assertSame([], (new Jobs('tcp://127.0.0.1:1'))->pushBatch([]));
    }

    /** The error text the supervisor sends when job 1 failed and job 2 is in doubt (pinned in rpc/pushreport_test.go). */
    private const PUSH_ERROR = 'jobs: push to "emails": consumer: 2 jobs of the batch not confirmed, 1 failed and 1 in doubt (job 1: broker nacked the publish)'
        . ' pipevisor-push-report={"confirmed":[[0,0],[3,3]],"failed":[[1,1]],"in_doubt":[[2,2]]}';

    /** Answers the next request (seq $seq) of $method with the JSON $body. */
    private function reply(int $seq, string $method, string $body): void
    {
        fwrite($this->conn, Frame::encode(Frame::CODEC_JSON, [$seq, \strlen($method)], $method . $body));
    }

    /** Reads the request the client sent and checks it is $method with $body. */
    private function expectRequest(int $seq, string $method, string $body): void
    {
        $want = Frame::encode(Frame::CODEC_JSON, [$seq, \strlen($method)], $method . $body);
        self::assertSame($want, $this->readRequest(\strlen($want)), "request of $method");
    }

    public function testFailedJobsListShowRetryRemove(): void
    {
        $jobs = $this->jobs();
        $job = '{"job":{"job":"App\\\\Mail","id":"j1","payload":"' . base64_encode("to:\x00a") . '","headers":{"x-tenant":{"value":["acme"]}},'
            . '"options":{"priority":3,"pipeline":"emails","key":"k"}},"reason":"bad address","attempts":2,"died_at":1765000000123456789}';
        $this->reply(1, 'jobs.FailedList', '{"jobs":[' . $job . ',{"job":{"id":"j2","options":{"pipeline":"images"}}}]}');
        $list = $jobs->failedList('emails', 10);
        $this->expectRequest(1, 'jobs.FailedList', '{"pipeline":"emails","limit":10}');
        self::assertCount(2, $list);
        self::assertSame(['id' => 'j1', 'pipeline' => 'emails', 'job' => 'App\Mail', 'payload' => "to:\x00a",
            'headers' => ['x-tenant' => ['acme']], 'priority' => 3, 'key' => 'k', 'attempts' => 2, 'reason' => 'bad address'],
            array_diff_key($list[0], ['diedAt' => true]));
        self::assertSame('1765000000.123456', $list[0]['diedAt']?->format('U.u'));
        self::assertNull($list[1]['diedAt']);
        self::assertSame('', $list[1]['reason']);

        $this->reply(2, 'jobs.FailedShow', $job);
        self::assertSame('bad address', $jobs->failedShow('j1')['reason']);
        $this->expectRequest(2, 'jobs.FailedShow', '{"id":"j1"}');

        $this->reply(3, 'jobs.FailedRetry', '{"ids":["j1","j2"]}');
        self::assertSame(['j1', 'j2'], $jobs->failedRetry('j1', 'j2'));
        $this->expectRequest(3, 'jobs.FailedRetry', '{"ids":["j1","j2"]}');

        $this->reply(4, 'jobs.FailedRemove', '{"ids":["j3"]}');
        self::assertSame(['j3'], $jobs->failedRemoveAll('emails'));
        $this->expectRequest(4, 'jobs.FailedRemove', '{"all":true,"pipeline":"emails"}');

        $this->reply(5, 'jobs.FailedRetry', '{}');
        self::assertSame([], $jobs->failedRetryAll());
        $this->expectRequest(5, 'jobs.FailedRetry', '{"all":true}');

        self::assertSame([], $jobs->failedRemove(), 'no ids: nothing is sent');

        fwrite($this->conn, Frame::encode(Frame::CODEC_JSON | Frame::ERROR, [6, 15], 'jobs.FailedShowjobs: "zz": consumer: no such failed job'));
        try {
            $jobs->failedShow('zz');
            self::fail('an unknown failed job did not throw');
        } catch (RPCException $e) {
            self::assertSame('jobs: "zz": consumer: no such failed job', $e->getMessage());
        }
    }

    /** @return list<array{pipeline: string, job: string, payload: string, id: string}> */
    private static function fourJobs(): array
    {
        return array_map(fn (int $i) => ['pipeline' => 'emails', 'job' => 'J', 'payload' => 'p', 'id' => "id-$i"], range(0, 3));
    }

    /** Answers the next request (seq 1) of $method with an ERROR frame carrying $text. */
    private function replyError(string $method, string $text): void
    {
        fwrite($this->conn, Frame::encode(Frame::CODEC_JSON | Frame::ERROR, [1, \strlen($method)], $method . $text));
    }

    public function testAPartlyConfirmedBatchSaysWhichJobsAreConfirmedFailedAndInDoubt(): void
    {
        $jobs = $this->jobs();
        $this->replyError('jobs.PushBatch', self::PUSH_ERROR);
        try {
            $jobs->pushBatch(self::fourJobs());
            self::fail('a partly confirmed batch did not throw');
        } catch (PushException $e) {
            self::assertSame(['id-0', 'id-3'], $e->getConfirmed());
            self::assertSame(['id-1'], $e->getFailed());
            self::assertSame(['id-2'], $e->getInDoubt());
            self::assertTrue($e->isServerError());
            self::assertSame('jobs.PushBatch', $e->getMethod());
            self::assertStringNotContainsString('pipevisor-push-report', $e->getMessage());
            self::assertStringStartsWith('jobs: push to "emails"', $e->getMessage());
            self::assertInstanceOf(RPCException::class, $e);
        }
    }

    public function testARefusedPushFailsEveryJob(): void
    {
        $jobs = $this->jobs();
        $this->replyError('jobs.Push', 'jobs: push to "nope": consumer: unknown pipeline');
        try {
            $jobs->push('nope', 'J', 'p', ['id' => 'only']);
            self::fail('a refused push did not throw');
        } catch (PushException $e) {
            self::assertSame([], $e->getConfirmed());
            self::assertSame(['only'], $e->getFailed());
            self::assertSame([], $e->getInDoubt());
            self::assertSame('jobs: push to "nope": consumer: unknown pipeline', $e->getMessage());
        }
    }

    public function testAConnectionLostDuringAPushLeavesItInDoubt(): void
    {
        $jobs = $this->jobs();
        fclose($this->conn);
        try {
            $jobs->pushBatch(self::fourJobs());
            self::fail('a push on a closed connection did not throw');
        } catch (PushException $e) {
            self::assertSame(['id-0', 'id-1', 'id-2', 'id-3'], $e->getInDoubt());
            self::assertSame([], $e->getFailed());
            self::assertFalse($e->isServerError());
        }
    }

    public function testNoSupervisorFailsEveryJob(): void
    {
        $jobs = new Jobs('unix://' . sys_get_temp_dir() . '/pipevisor-nobody-' . bin2hex(random_bytes(6)) . '.sock');
        try {
            $jobs->push('emails', 'J', 'p', ['id' => 'x']);
            self::fail('a push with nothing listening did not throw');
        } catch (PushException $e) {
            self::assertSame(['x'], $e->getFailed());
            self::assertStringContainsString('is the supervisor running?', $e->getMessage());
        }
    }

    public function testAReportThatDoesNotFitTheBatchLeavesEveryJobInDoubt(): void
    {
        $jobs = $this->jobs();
        $this->replyError('jobs.PushBatch', 'boom pipevisor-push-report={"confirmed":[[0,4]],"failed":[],"in_doubt":[]}');
        try {
            $jobs->pushBatch(self::fourJobs());
            self::fail('did not throw');
        } catch (PushException $e) {
            self::assertSame(['id-0', 'id-1', 'id-2', 'id-3'], $e->getInDoubt());
            self::assertSame([], $e->getConfirmed());
        }
    }
}
