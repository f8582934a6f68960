<?php

declare(strict_types=1);

namespace Pipevisor\Tests;

use PHPUnit\Framework\TestCase;
use Pipevisor\Frame;

/**
 * Relay::create('pipes') over a real OS pipe, in a child process
 * (fixtures/relay-reader.php): a frame is read whole however the bytes
 * arrive, and nothing past it is read, so frames the supervisor queued
 * behind it stay in the pipe.
 */
final class RelayPipeTest extends TestCase
{
    private const READER = __DIR__ . '/fixtures/relay-reader.php';
    private const DEADLINE = 20.0;

    /**
     * Runs the reader with $chunks written to its stdin one at a time (a
     * pause between them), then stdin closed.
     *
     * @param list<string> $args
     * @param list<string> $chunks
     * @return array{stdout: string, stderr: string, code: int}
     */
    private static function runReader(array $args, array $chunks): array
    {
        $proc = proc_open(
            [\PHP_BINARY, '-d', 'display_errors=stderr', '-d', 'error_reporting=-1', self::READER, ...$args],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
        );
        self::assertIsResource($proc);
        foreach ($chunks as $i => $chunk) {
            if ($i > 0) {
                usleep(100000);
            }
            self::assertSame(\strlen($chunk), fwrite($pipes[0], $chunk));
        }
        fclose($pipes[0]);
        $out = [1 => '', 2 => ''];
        $open = [1 => $pipes[1], 2 => $pipes[2]];
        $deadline = microtime(true) + self::DEADLINE;
        while ($open !== []) {
            $left = $deadline - microtime(true);
            if ($left <= 0) {
                proc_terminate($proc, 9);
                self::fail('the reader did not finish in time; stderr: ' . $out[2]);
            }
            $r = array_values($open);
            $w = $e = null;
            self::assertNotFalse(stream_select($r, $w, $e, (int) $left, 100000));
            foreach ($r as $s) {
                $k = array_search($s, $open, true);
                $chunk = fread($s, 65536);
                if ($chunk === '' || $chunk === false) {
                    fclose($s);
                    unset($open[$k]);
                } else {
                    $out[$k] .= $chunk;
                }
            }
        }

        return ['stdout' => $out[1], 'stderr' => $out[2], 'code' => proc_close($proc)];
    }

    private static function job(string $id, string $body): string
    {
        $ctx = json_encode(['id' => $id, 'job' => 'Test', 'driver' => 'memory', 'headers' => (object) [], 'pipeline' => 'default']);

        return Frame::encode(Frame::CODEC_RAW, [\strlen($ctx)], $ctx . $body);
    }

    /** @return array<string, array{string}> */
    public static function modes(): array
    {
        return ['STDIN' => ['stdin'], 'duplicate of stdin (moveOffStdin)' => ['moveOffStdin']];
    }

    /**
     * The supervisor writes a job ahead of the reply to the one before it;
     * a worker that dies after its first job must leave the second in the
     * pipe, where the supervisor counts it as never started. Here a `cat`
     * started after the first receive() reads what the relay left.
     *
     * @dataProvider modes
     */
    public function testReceiveLeavesTheNextFrameInThePipe(string $mode): void
    {
        $a = self::job('a', 'first');
        $b = self::job('b', str_repeat('second ', 10));
        $file = tempnam(sys_get_temp_dir(), 'relay-rest-');
        try {
            // One write: both frames are in the pipe before the first read.
            $r = self::runReader([$mode, '1', $file], [$a . $b]);

            self::assertSame(0, $r['code'], $r['stderr']);
            self::assertSame('frame ' . bin2hex($a) . "\n", $r['stdout']);
            self::assertSame(bin2hex($b), bin2hex((string) file_get_contents($file)), 'what the relay left unread in the pipe');
            self::assertSame('', $r['stderr']);
        } finally {
            @unlink($file);
        }
    }

    /** @dataProvider modes */
    public function testFramesArrivingInPiecesAreReadWhole(string $mode): void
    {
        $a = self::job('a', 'first');
        $b = self::job('b', 'second');
        $bytes = $a . $b;
        // Split inside the first header, inside its payload, across the
        // boundary and inside the second header.
        $chunks = [substr($bytes, 0, 5), substr($bytes, 5, 20), substr($bytes, 25, \strlen($a) - 25 + 3), substr($bytes, \strlen($a) + 3, 4), substr($bytes, \strlen($a) + 7)];
        self::assertSame($bytes, implode('', $chunks));

        $r = self::runReader([$mode, '3'], $chunks);

        self::assertSame(0, $r['code'], $r['stderr']);
        self::assertSame('', $r['stderr']);
        self::assertSame('frame ' . bin2hex($a) . "\nframe " . bin2hex($b) . "\nend\n", $r['stdout']);
    }

    /** @dataProvider modes */
    public function testEndOfStreamInsideAFrameThrows(string $mode): void
    {
        $a = self::job('a', 'first');

        $inHeader = self::runReader([$mode, '2'], [$a . substr($a, 0, 7)]);
        $inPayload = self::runReader([$mode, '2'], [$a . substr($a, 0, 20)]);

        self::assertSame('frame ' . bin2hex($a) . "\nRelayException relay: stream ended after 7 of 12 bytes of a frame\n", $inHeader['stdout'], $inHeader['stderr']);
        self::assertSame('frame ' . bin2hex($a) . "\nRelayException relay: stream ended after 8 of " . (\strlen($a) - 12) . " bytes of a frame\n", $inPayload['stdout'], $inPayload['stderr']);
    }
}
