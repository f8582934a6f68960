<?php

declare(strict_types=1);

namespace Pipevisor\Tests;

use PHPUnit\Framework\TestCase;
use Pipevisor\Consumer;
use Pipevisor\Frame;
use Pipevisor\FrameException;
use Pipevisor\Relay;
use Pipevisor\RelayException;

/**
 * The worker loop against in-memory streams fed with the golden frames.
 */
final class ConsumerTest extends TestCase
{
    /** @var resource */
    private $out;

    private function consumer(string $input): Consumer
    {
        $in = fopen('php://memory', 'w+b');
        fwrite($in, $input);
        rewind($in);
        $this->out = fopen('php://memory', 'w+b');

        return new Consumer(new Relay($in, $this->out), redirectOutput: false);
    }

    /** @return list<Frame> the frames the consumer wrote */
    private function written(): array
    {
        rewind($this->out);
        $relay = new Relay($this->out, fopen('php://memory', 'wb'));
        $frames = [];
        while (($f = $relay->receive()) !== null) {
            $frames[] = $f;
        }

        return $frames;
    }

    private function writtenBytes(): string
    {
        rewind($this->out);

        return stream_get_contents($this->out);
    }

    public function testHandshakeJobAckStop(): void
    {
        $c = $this->consumer(Golden::bytes('handshake_request') . Golden::bytes('job') . Golden::bytes('stop'));

        $task = $c->waitTask();
        self::assertNotNull($task);
        self::assertSame('9f0c2a7e-5b1d-4c8e-a3f2-7d6e1b0c4a91', $task->getId());
        self::assertSame('{"user_id":42,"template":"welcome","locale":"en"}', $task->getPayload());
        $task->ack();
        self::assertNull($c->waitTask());
        self::assertTrue($c->isStopped());
        self::assertNull($c->waitTask(), 'a stopped consumer stays stopped');

        $handshake = Frame::encode(Frame::CONTROL, [], '{"pid":' . getmypid() . '}');
        self::assertSame(bin2hex($handshake . Golden::bytes('reply_ack')), bin2hex($this->writtenBytes()));
    }

    public function testRepliesAreTheGoldenFrames(): void
    {
        $job = Golden::bytes('job');
        $c = $this->consumer($job . $job . $job);

        $c->waitTask()->nack('invalid payload: missing user_id');
        $c->waitTask()->withDelay(5)->nack('database is busy', true);
        $c->waitTask()->withDelay(30)->withHeader('x-retry-reason', 'rate-limit')->requeue('rate limited');
        self::assertNull($c->waitTask());

        self::assertSame(
            bin2hex(Golden::bytes('reply_nack') . Golden::bytes('reply_nack_requeue') . Golden::bytes('reply_requeue')),
            bin2hex($this->writtenBytes()),
        );
    }

    public function testErrorSendsTheGoldenErrorFrame(): void
    {
        $c = $this->consumer(Golden::bytes('job') . Golden::bytes('job'));

        $t = $c->waitTask();
        $t->error('RuntimeException: SMTP connection refused in /app/src/Jobs/SendWelcomeEmail.php:31');
        $t->ack();
        self::assertTrue($t->isFails());
        self::assertSame(\Pipevisor\Task::REPLY_ERROR, $t->getReplyType());
        self::assertNotNull($c->waitTask(), 'the worker stays after an error reply');

        self::assertSame(bin2hex(Golden::bytes('error')), bin2hex($this->writtenBytes()));
    }

    public function testStopWorkerSendsTheGoldenRetireReplyAndEndsTheLoop(): void
    {
        $c = $this->consumer(Golden::bytes('job') . Golden::bytes('job'));

        $t = $c->waitTask();
        $t->stopWorker();
        $t->ack();
        self::assertNull($c->waitTask(), 'a retired worker takes no more jobs');
        self::assertTrue($c->isStopped());

        self::assertSame(bin2hex(Golden::bytes('reply_worker_stop')), bin2hex($this->writtenBytes()));
    }

    public function testEndOfStreamEndsTheLoopCleanly(): void
    {
        $c = $this->consumer('');

        self::assertNull($c->waitTask());
        self::assertTrue($c->isStopped());
        self::assertSame('', $this->writtenBytes());
    }

    public function testATaskLeftWithoutReplyIsFailedWithAnErrorFrame(): void
    {
        $c = $this->consumer(Golden::bytes('job') . Golden::bytes('job'));

        $first = $c->waitTask();
        $second = $c->waitTask();
        self::assertTrue($first->isCompleted(), 'an ERROR frame was sent for it');
        self::assertTrue($first->isFails());
        self::assertSame(\Pipevisor\Task::REPLY_ERROR, $first->getReplyType());
        $first->ack(); // too late: ignored, nothing is written for it
        self::assertFalse($first->isSuccessful(), 'the supervisor got the ERROR frame, not the ack');
        self::assertSame(\Pipevisor\Task::REPLY_ERROR, $first->getReplyType());
        self::assertFalse($second->isCompleted());
        $second->ack();
        self::assertNull($c->waitTask());

        $frames = $this->written();
        self::assertCount(2, $frames);
        self::assertSame(Frame::ERROR, $frames[0]->flags);
        self::assertSame([], $frames[0]->options);
        self::assertStringContainsString('9f0c2a7e-5b1d-4c8e-a3f2-7d6e1b0c4a91', $frames[0]->payload);
        self::assertSame(Golden::bytes('reply_ack'), $frames[1]->toBytes());
    }

    public function testABadContextIsAnsweredWithAnErrorAndTheLoopGoesOn(): void
    {
        $bad = Frame::encode(Frame::CODEC_RAW, [3], '{x}body');
        $c = $this->consumer($bad . Golden::bytes('job'));

        $task = $c->waitTask();
        self::assertSame('9f0c2a7e-5b1d-4c8e-a3f2-7d6e1b0c4a91', $task->getId());
        $task->ack();

        $frames = $this->written();
        self::assertCount(2, $frames);
        self::assertSame(Frame::ERROR, $frames[0]->flags);
        self::assertStringStartsWith('worker: job context is not a JSON object', $frames[0]->payload);
        self::assertSame(Golden::bytes('reply_ack'), $frames[1]->toBytes());
    }

    public function testAnEmptyBodyAndMultiByteContextAreSplitByTheOption(): void
    {
        $ctx = '{"id":"ü","job":"Ü","pipeline":"p","headers":{}}';
        $c = $this->consumer(Frame::encode(Frame::CODEC_RAW, [\strlen($ctx)], $ctx));

        $t = $c->waitTask();
        self::assertSame('ü', $t->getId());
        self::assertSame('', $t->getPayload());
    }

    public function testALargePayloadArrivesWhole(): void
    {
        $ctx = '{"id":"big"}';
        $body = random_bytes(3 * 1024 * 1024);
        $c = $this->consumer(Frame::encode(Frame::CODEC_RAW, [\strlen($ctx)], $ctx . $body));

        self::assertSame($body, $c->waitTask()->getPayload());
    }

    public function testACorruptFrameThrows(): void
    {
        $job = Golden::bytes('job');
        $job[7] = \chr(\ord($job[7]) ^ 0xFF);
        $c = $this->consumer($job);

        $this->expectException(FrameException::class);
        $c->waitTask();
    }

    public function testAStreamCutMidFrameThrows(): void
    {
        $c = $this->consumer(substr(Golden::bytes('job'), 0, 40));

        $this->expectException(RelayException::class);
        $this->expectExceptionMessage('stream ended after');
        $c->waitTask();
    }

    public function testAReplyToAClosedRelayThrows(): void
    {
        $in = fopen('php://memory', 'w+b');
        fwrite($in, Golden::bytes('job'));
        rewind($in);
        $out = fopen('php://memory', 'rb'); // read-only: every write fails
        $c = new Consumer(new Relay($in, $out), redirectOutput: false);

        $task = $c->waitTask();
        $this->expectException(RelayException::class);
        $task->ack();
    }

    public function testUnknownRelayAddressIsRejected(): void
    {
        $this->expectException(RelayException::class);
        $this->expectExceptionMessage('unknown relay address');
        Relay::create('http://127.0.0.1:1');
    }
}
