<?php

declare(strict_types=1);

namespace Pipevisor\Tests;

use PHPUnit\Framework\TestCase;
use Pipevisor\Frame;
use Pipevisor\Relay;

/**
 * Runs real worker scripts as subprocesses and checks the frames they write.
 */
final class WorkerProcessTest extends TestCase
{
    private const EXAMPLES = __DIR__ . '/../../examples';
    private const DEADLINE = 20.0;

    /**
     * Runs a PHP script with $stdin on its standard input.
     *
     * @param array<string, string> $env added to the environment
     * @return array{stdout: string, stderr: string, code: int, pid: int}
     */
    private static function runWorker(string $script, string $stdin, array $env = []): array
    {
        $proc = proc_open(
            [\PHP_BINARY, '-d', 'display_errors=1', '-d', 'error_reporting=-1', $script],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
            null,
            $env + getenv(),
        );
        self::assertIsResource($proc);
        $pid = proc_get_status($proc)['pid'];
        fwrite($pipes[0], $stdin);
        fclose($pipes[0]);
        [$stdout, $stderr] = self::drain($proc, $pipes[1], $pipes[2]);

        return ['stdout' => $stdout, 'stderr' => $stderr, 'code' => proc_close($proc), 'pid' => $pid];
    }

    /**
     * Reads two pipes to their end, killing the process at the deadline.
     *
     * @param resource $proc
     * @param resource $a
     * @param resource $b
     * @return array{string, string}
     */
    private static function drain($proc, $a, $b): array
    {
        $out = [(int) $a => '', (int) $b => ''];
        $open = [$a, $b];
        $deadline = microtime(true) + self::DEADLINE;
        while ($open !== []) {
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                proc_terminate($proc, 9);
                self::fail('worker did not finish in time; stderr: ' . $out[(int) $b]);
            }
            $r = $open;
            $w = $e = null;
            if (stream_select($r, $w, $e, (int) $left, 100000) === false) {
                self::fail('stream_select failed');
            }
            foreach ($r as $s) {
                $chunk = fread($s, 65536);
                if ($chunk === '' || $chunk === false) {
                    $open = array_values(array_filter($open, static fn ($x) => $x !== $s));
                    fclose($s);
                } else {
                    $out[(int) $s] .= $chunk;
                }
            }
        }

        return [$out[(int) $a], $out[(int) $b]];
    }

    /** @return list<Frame> */
    private static function frames(string $bytes): array
    {
        $in = fopen('php://memory', 'w+b');
        fwrite($in, $bytes);
        rewind($in);
        $relay = new Relay($in, fopen('php://memory', 'wb'));
        $frames = [];
        while (($f = $relay->receive()) !== null) {
            $frames[] = $f;
        }

        return $frames;
    }

    /** @param array<string, list<string>> $headers */
    private static function job(string $id, array $headers, string $body = 'payload'): string
    {
        $ctx = json_encode(['id' => $id, 'job' => 'Test', 'driver' => 'memory', 'headers' => (object) $headers, 'pipeline' => 'default']);

        return Frame::encode(Frame::CODEC_RAW, [\strlen($ctx)], $ctx . $body);
    }

    public function testEchoWorkerAnswersHandshakeAcksAndStops(): void
    {
        $r = self::runWorker(self::EXAMPLES . '/echo-worker.php', Golden::bytes('handshake_request') . Golden::bytes('job') . Golden::bytes('stop'));

        self::assertSame(0, $r['code'], $r['stderr']);
        self::assertSame('', $r['stderr']);
        $handshake = Frame::encode(Frame::CONTROL, [], '{"pid":' . $r['pid'] . '}');
        self::assertSame(bin2hex($handshake . Golden::bytes('reply_ack')), bin2hex($r['stdout']));
    }

    public function testWorkerExitsCleanlyWhenStdinClosesWithoutStop(): void
    {
        $r = self::runWorker(self::EXAMPLES . '/echo-worker.php', Golden::bytes('handshake_request') . Golden::bytes('job'));

        self::assertSame(0, $r['code'], $r['stderr']);
        $frames = self::frames($r['stdout']);
        self::assertCount(2, $frames);
        self::assertSame(Golden::bytes('reply_ack'), $frames[1]->toBytes());
    }

    public function testWorkerExitsCleanlyOnImmediateEndOfInput(): void
    {
        $r = self::runWorker(self::EXAMPLES . '/echo-worker.php', '');

        self::assertSame(0, $r['code'], $r['stderr']);
        self::assertSame('', $r['stdout']);
    }

    public function testExampleWorkerOutcomes(): void
    {
        $input = Golden::bytes('handshake_request')
            . self::job('plain', [])
            . self::job('nack', ['x-outcome' => ['nack']])
            . self::job('retry', ['x-outcome' => ['retry'], 'x-delay' => ['4']])
            . self::job('requeue', ['x-outcome' => ['requeue'], 'x-delay' => ['2']])
            . self::job('fail', ['x-outcome' => ['fail']])
            . self::job('once-1', ['x-outcome' => ['retry-once']])
            . self::job('once-2', ['x-outcome' => ['retry-once'], 'x-attempt' => ['2']])
            . Golden::bytes('stop');
        $r = self::runWorker(self::EXAMPLES . '/worker.php', $input);

        self::assertSame(0, $r['code'], $r['stderr']);
        $replies = array_map(
            static fn (Frame $f): array => json_decode(substr($f->payload, $f->options[0]), true, 512, JSON_THROW_ON_ERROR),
            \array_slice(self::frames($r['stdout']), 1),
        );
        self::assertCount(7, $replies);
        self::assertSame(['type' => 2, 'data' => []], $replies[0]);
        self::assertSame(['type' => 3, 'data' => ['message' => 'the job asked to be nacked', 'requeue' => false]], $replies[1]);
        self::assertSame(['type' => 3, 'data' => ['message' => 'the job asked to be retried', 'requeue' => true, 'delay_seconds' => 4]], $replies[2]);
        self::assertSame(4, $replies[3]['type']);
        self::assertSame(2, $replies[3]['data']['delay_seconds']);
        self::assertSame(['x-requeued-by' => [(string) $r['pid']]], $replies[3]['data']['headers']);
        self::assertSame(3, $replies[4]['type']);
        self::assertTrue($replies[4]['data']['requeue']);
        self::assertStringStartsWith('RuntimeException: job fail asked to fail', $replies[4]['data']['message']);
        self::assertStringContainsString('job fail failed', $r['stderr']);
        self::assertSame(['type' => 3, 'data' => ['message' => 'first attempt of a retry-once job', 'requeue' => true]], $replies[5]);
        self::assertSame(['type' => 2, 'data' => []], $replies[6]);
    }

    public function testOutputFromJobsGoesToStderrNotTheProtocol(): void
    {
        $r = self::runWorker(__DIR__ . '/fixtures/noisy-worker.php', Golden::bytes('handshake_request') . Golden::bytes('job') . Golden::bytes('stop'));

        self::assertSame(0, $r['code'], $r['stderr']);
        $frames = self::frames($r['stdout']);
        self::assertCount(2, $frames);
        self::assertSame(Golden::bytes('reply_ack'), $frames[1]->toBytes());
        self::assertStringContainsString('echo from job 9f0c2a7e-5b1d-4c8e-a3f2-7d6e1b0c4a91', $r['stderr']);
        self::assertStringContainsString('printf 42', $r['stderr']);
        self::assertStringContainsString('["dumped"]=>', $r['stderr']);
        self::assertStringContainsString('Undefined array key "missing"', $r['stderr']);
    }

    public function testChildProcessesAndUnbufferedOutputGoToStderrNotTheProtocol(): void
    {
        $r = self::runWorker(__DIR__ . '/fixtures/child-output-worker.php', Golden::bytes('handshake_request') . Golden::bytes('job') . Golden::bytes('job') . Golden::bytes('stop'));

        self::assertSame(0, $r['code'], $r['stderr']);
        $handshake = Frame::encode(Frame::CONTROL, [], '{"pid":' . $r['pid'] . '}');
        self::assertSame(bin2hex($handshake . Golden::bytes('reply_ack') . Golden::bytes('reply_ack')), bin2hex($r['stdout']));
        foreach (['from proc_open', 'from passthru', 'from popen', 'echo after ob_end_clean'] as $line) {
            self::assertSame(2, substr_count($r['stderr'], $line . "\n"), $line . ' in ' . $r['stderr']);
        }
    }

    /**
     * Runs the stdin-reader fixture: sends the handshake and a first job,
     * waits until the job starts reading its stdin, then sends a second job
     * and the stop frame back to back and closes the pipe. A read of fd 0
     * that reached the supervisor's pipe would take those frames.
     *
     * @param list<string> $phpArgs
     * @return array{stdout: string, stderr: string, code: int, pid: int}
     */
    private static function runStdinReader(string $ways, array $phpArgs = []): array
    {
        $proc = proc_open(
            [\PHP_BINARY, '-d', 'display_errors=1', '-d', 'error_reporting=-1', ...$phpArgs, __DIR__ . '/fixtures/stdin-reader-worker.php'],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
            null,
            ['READ_STDIN' => $ways] + getenv(),
        );
        self::assertIsResource($proc);
        $pid = proc_get_status($proc)['pid'];
        fwrite($pipes[0], Golden::bytes('handshake_request') . self::job('stdin-1', []));
        $stderr = '';
        $deadline = microtime(true) + self::DEADLINE;
        while (!str_contains($stderr, "job stdin-1 reads stdin\n")) {
            $r = [$pipes[2]];
            $w = $e = null;
            if (microtime(true) > $deadline || stream_select($r, $w, $e, 0, 100000) === false || feof($pipes[2])) {
                proc_terminate($proc, 9);
                self::fail('the first job did not start; stderr: ' . $stderr);
            }
            $stderr .= $r === [] ? '' : fread($pipes[2], 65536);
        }
        fwrite($pipes[0], self::job('stdin-2', []) . Golden::bytes('stop'));
        fclose($pipes[0]);
        [$stdout, $rest] = self::drain($proc, $pipes[1], $pipes[2]);

        return ['stdout' => $stdout, 'stderr' => $stderr . $rest, 'code' => proc_close($proc), 'pid' => $pid];
    }

    /** @return array<string, array{string, string}> */
    public static function stdinReaders(): array
    {
        return [
            'fgets(STDIN)' => ['fgets', 'false'],
            'php://stdin' => ['php://stdin', 'string(0)'],
            'proc_open cat' => ['proc_open', 'string(0)'],
            'shell_exec cat' => ['shell_exec', 'NULL'],
        ];
    }

    /** @dataProvider stdinReaders */
    public function testJobsReadingStdinSeeEndOfFileNotTheFrames(string $way, string $seen): void
    {
        $r = self::runStdinReader($way);

        self::assertSame(0, $r['code'], $r['stderr']);
        $handshake = Frame::encode(Frame::CONTROL, [], '{"pid":' . $r['pid'] . '}');
        self::assertSame(bin2hex($handshake . Golden::bytes('reply_ack') . Golden::bytes('reply_ack')), bin2hex($r['stdout']), $r['stderr']);
        self::assertStringContainsString("job stdin-1 $way: $seen\n", $r['stderr']);
        self::assertStringContainsString("job stdin-2 $way: $seen\n", $r['stderr']);
    }

    public function testWithoutFfiStdinIsClosedAndFd0ReadsEndOfFile(): void
    {
        $r = self::runStdinReader('fgets,php://stdin,proc_open,shell_exec', ['-d', 'ffi.enable=0']);

        self::assertSame(0, $r['code'], $r['stderr']);
        $handshake = Frame::encode(Frame::CONTROL, [], '{"pid":' . $r['pid'] . '}');
        self::assertSame(bin2hex($handshake . Golden::bytes('reply_ack') . Golden::bytes('reply_ack')), bin2hex($r['stdout']), $r['stderr']);
        foreach (['stdin-1', 'stdin-2'] as $id) {
            self::assertStringContainsString("job $id fgets: TypeError fgets(): supplied resource is not a valid stream resource\n", $r['stderr']);
            self::assertStringContainsString("job $id php://stdin: string(0)\n", $r['stderr']);
            self::assertStringContainsString("job $id proc_open: string(0)\n", $r['stderr']);
            self::assertStringContainsString("job $id shell_exec: NULL\n", $r['stderr']);
        }
    }

    public function testOutputBeforeTheConsumerExistsIsNotRedirected(): void
    {
        // Documented limit: only output after `new Consumer()` is redirected.
        $r = self::runWorker(__DIR__ . '/fixtures/noisy-worker.php', '', ['ECHO_BEFORE_CONSUMER' => '1']);

        self::assertSame("before the consumer exists\n", $r['stdout']);
        self::assertSame(0, $r['code']);
    }

    public function testWorkerDialsATcpRelayFromRrRelay(): void
    {
        $server = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
        self::assertIsResource($server, $errstr);
        $addr = stream_socket_get_name($server, false);
        $proc = proc_open(
            [\PHP_BINARY, self::EXAMPLES . '/echo-worker.php'],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
            null,
            ['RR_RELAY' => 'tcp://' . $addr] + getenv(),
        );
        self::assertIsResource($proc);
        $pid = proc_get_status($proc)['pid'];
        fclose($pipes[0]);
        $conn = stream_socket_accept($server, self::DEADLINE);
        self::assertIsResource($conn, 'the worker did not connect');
        stream_set_timeout($conn, (int) self::DEADLINE);
        fwrite($conn, Golden::bytes('handshake_request'));
        $relay = new Relay($conn, $conn);
        $hello = $relay->receive();
        fwrite($conn, Golden::bytes('job'));
        $reply = $relay->receive();
        fwrite($conn, Golden::bytes('stop'));
        [$stdout, $stderr] = self::drain($proc, $pipes[1], $pipes[2]);
        $code = proc_close($proc);
        fclose($conn);
        fclose($server);

        self::assertSame(0, $code, $stderr);
        self::assertSame('', $stdout);
        self::assertSame(Frame::CONTROL, $hello->flags);
        self::assertSame(['pid' => $pid], json_decode($hello->payload, true));
        self::assertSame(Golden::bytes('reply_ack'), $reply->toBytes());
    }
}
