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
        [$proc, $pipes, $pid] = self::startFixture('stdin-reader-worker.php', ['READ_STDIN' => $ways], $phpArgs);
        fwrite($pipes[0], Golden::bytes('handshake_request') . self::job('stdin-1', []));
        $stderr = '';
        self::awaitStderr($proc, $pipes[2], '/^job stdin-1 reads stdin$/m', $stderr, 'the first job did not start');
        fwrite($pipes[0], self::job('stdin-2', []) . Golden::bytes('stop'));
        fclose($pipes[0]);
        [$stdout, $rest] = self::drain($proc, $pipes[1], $pipes[2]);

        return ['stdout' => $stdout, 'stderr' => $stderr . $rest, 'code' => proc_close($proc), 'pid' => $pid];
    }

    /**
     * Starts a fixture worker with pipes on its fd 0, 1 and 2.
     *
     * @param array<string, string> $env added to the environment
     * @param list<string> $phpArgs
     * @return array{resource, array<int, resource>, int} the process, its pipes and its pid
     */
    private static function startFixture(string $fixture, array $env, array $phpArgs): array
    {
        $proc = proc_open(
            [\PHP_BINARY, '-d', 'display_errors=1', '-d', 'error_reporting=-1', ...$phpArgs, __DIR__ . '/fixtures/' . $fixture],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
            null,
            $env + getenv(),
        );
        self::assertIsResource($proc);

        return [$proc, $pipes, proc_get_status($proc)['pid']];
    }

    /**
     * Reads a worker's stderr into $stderr until it matches $pattern; kills
     * the worker and fails with $what when it does not within DEADLINE.
     *
     * @param resource $proc
     * @param resource $pipe
     * @return array<int, string> the matches
     */
    private static function awaitStderr($proc, $pipe, string $pattern, string &$stderr, string $what): array
    {
        $deadline = microtime(true) + self::DEADLINE;
        while (!preg_match($pattern, $stderr, $m)) {
            $r = [$pipe];
            $w = $e = null;
            if (microtime(true) > $deadline || stream_select($r, $w, $e, 0, 100000) === false || feof($pipe)) {
                proc_terminate($proc, 9);
                self::fail($what . '; stderr: ' . $stderr);
            }
            $stderr .= $r === [] ? '' : fread($pipe, 65536);
        }

        return $m;
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

    /**
     * Runs the background-child fixture: sends the handshake and a job, waits
     * until the job reports the child it leaves running and notes which
     * files that child and the worker have open, then sends the stop frame,
     * closes the pipe and reads the worker's stdout until end of file or
     * until $eofWithin seconds pass. Then it waits for the worker to exit,
     * kills the child and reads the worker's stderr to its end.
     *
     * @param list<string> $phpArgs
     * @return array{stdout: string, eof: bool, seconds: float, childAlive: bool, childFds: list<string>, workerFds: list<string>, stdinPipe: string, stdoutPipe: string, stderr: string, code: int, pid: int}
     */
    private static function runBackgroundChild(string $way, float $eofWithin, array $phpArgs = []): array
    {
        [$proc, $pipes, $pid] = self::startFixture('background-child-worker.php', ['BACKGROUND' => $way], $phpArgs);
        // A pipe's inode is the number /proc/<pid>/fd shows: pipe:[inode].
        $stdinPipe = 'pipe:[' . fstat($pipes[0])['ino'] . ']';
        $stdoutPipe = 'pipe:[' . fstat($pipes[1])['ino'] . ']';
        $child = 0;
        try {
            fwrite($pipes[0], Golden::bytes('handshake_request') . self::job('bg-1', []));
            $stderr = '';
            $m = self::awaitStderr($proc, $pipes[2], '/^job bg-1 child (\d+)$/m', $stderr, 'the job did not start its child');
            $deadline = microtime(true) + self::DEADLINE;
            $child = (int) $m[1];
            self::assertGreaterThan(0, $child, $stderr);
            // Until it has exec'd sleep the forked child still has every fd.
            while (!str_starts_with((string) @file_get_contents("/proc/$child/cmdline"), "sleep\0")) {
                if (microtime(true) > $deadline) {
                    self::fail("the child $child did not exec sleep");
                }
                usleep(1000);
            }
            $childFds = self::openFiles($child);
            $workerFds = self::openFiles($pid);

            fwrite($pipes[0], Golden::bytes('stop'));
            fclose($pipes[0]);
            $start = microtime(true);
            $stdout = '';
            $eof = false;
            while (!$eof && ($left = $start + $eofWithin - microtime(true)) > 0) {
                $r = [$pipes[1]];
                $w = $e = null;
                if (stream_select($r, $w, $e, (int) $left, (int) (fmod($left, 1.0) * 1e6)) === false) {
                    self::fail('stream_select failed');
                }
                if ($r !== []) {
                    $chunk = fread($pipes[1], 65536);
                    $stdout .= (string) $chunk;
                    $eof = ($chunk === '' || $chunk === false) && feof($pipes[1]);
                }
            }
            $seconds = microtime(true) - $start;
            $childAlive = is_dir("/proc/$child");

            while (($status = proc_get_status($proc))['running']) {
                if (microtime(true) > $deadline) {
                    self::fail('the worker did not exit; stderr: ' . $stderr);
                }
                usleep(10000);
            }
            $code = $status['exitcode'];
        } finally {
            if ($child > 0) {
                self::kill($child);
            }
            if (!isset($code)) {
                proc_terminate($proc, 9);
            }
        }
        [$rest, $stderrRest] = self::drain($proc, $pipes[1], $pipes[2]);
        proc_close($proc);

        return [
            'stdout' => $stdout . $rest, 'eof' => $eof, 'seconds' => $seconds, 'childAlive' => $childAlive,
            'childFds' => $childFds, 'workerFds' => $workerFds, 'stdinPipe' => $stdinPipe, 'stdoutPipe' => $stdoutPipe,
            'stderr' => $stderr . $stderrRest, 'code' => $code, 'pid' => $pid,
        ];
    }

    /** @return list<string> what the fds in /proc/<pid>/fd link to */
    private static function openFiles(int $pid): array
    {
        $files = [];
        foreach (scandir("/proc/$pid/fd") ?: [] as $fd) {
            if ($fd !== '.' && $fd !== '..' && ($target = @readlink("/proc/$pid/fd/$fd")) !== false) {
                $files[] = $target;
            }
        }
        self::assertNotSame([], $files, "cannot read /proc/$pid/fd");

        return $files;
    }

    private static function kill(int $pid): void
    {
        if (\function_exists('posix_kill')) {
            posix_kill($pid, 9);
        } else {
            exec('kill -9 ' . $pid . ' 2>/dev/null');
        }
    }

    /** @return array<string, array{string}> */
    public static function backgroundChildren(): array
    {
        return [
            'proc_open sleep' => ['proc_open'],
            'shell_exec sleep &' => ['shell_exec'],
        ];
    }

    /** @dataProvider backgroundChildren */
    public function testChildLeftRunningByAJobDoesNotHoldTheSupervisorsPipes(string $way): void
    {
        $r = self::runBackgroundChild($way, 10.0);

        self::assertTrue($r['eof'], sprintf('the worker\'s stdout did not end within 10 s of the stop frame; stderr: %s', $r['stderr']));
        // The worker holds both pipes (through its duplicates): the names are right.
        self::assertContains($r['stdinPipe'], $r['workerFds']);
        self::assertContains($r['stdoutPipe'], $r['workerFds']);
        self::assertNotContains($r['stdinPipe'], $r['childFds'], 'the child inherited the frames-in pipe');
        self::assertNotContains($r['stdoutPipe'], $r['childFds'], 'the child inherited the frames-out pipe');
        self::assertContains('/dev/null', $r['childFds'], 'fd 0 of the child');
        self::assertTrue($r['childAlive'], 'the child (sleep 30) ended before the worker\'s stdout did');
        self::assertLessThan(5.0, $r['seconds']);
        self::assertSame(0, $r['code'], $r['stderr']);
        $handshake = Frame::encode(Frame::CONTROL, [], '{"pid":' . $r['pid'] . '}');
        self::assertSame(bin2hex($handshake . Golden::bytes('reply_ack')), bin2hex($r['stdout']), $r['stderr']);
    }

    public function testWithoutFfiChildrenInheritThePipesAndTheWorkerStillWorks(): void
    {
        // Documented limit: without FFI the duplicates stay inheritable, so
        // the worker's stdout ends only when the child left running ends.
        $r = self::runBackgroundChild('proc_open', 1.0, ['-d', 'ffi.enable=0']);

        self::assertContains($r['stdinPipe'], $r['childFds']);
        self::assertContains($r['stdoutPipe'], $r['childFds']);
        self::assertFalse($r['eof'], 'the worker\'s stdout ended while the child held it');
        self::assertTrue($r['childAlive']);
        self::assertSame(0, $r['code'], $r['stderr']);
        $handshake = Frame::encode(Frame::CONTROL, [], '{"pid":' . $r['pid'] . '}');
        self::assertSame(bin2hex($handshake . Golden::bytes('reply_ack')), bin2hex($r['stdout']), $r['stderr']);
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
