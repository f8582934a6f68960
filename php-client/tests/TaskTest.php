<?php

declare(strict_types=1);

namespace Pipevisor\Tests;

use PHPUnit\Framework\TestCase;
use Pipevisor\Task;

final class TaskTest extends TestCase
{
    /** @var list<string> reply bodies the task sent */
    private array $sent = [];

    private function task(array $context = [], string $payload = 'body'): Task
    {
        $this->sent = [];

        return new Task($context, $payload, function (string $body): void {
            $this->sent[] = $body;
        });
    }

    /** The task of the golden job frame. */
    private function goldenTask(): Task
    {
        $job = Golden::vectors()['job'];

        return $this->task(json_decode($job['context'], true, 512, JSON_THROW_ON_ERROR), $job['body']);
    }

    public function testGettersReadTheGoldenJobContext(): void
    {
        $t = $this->goldenTask();

        self::assertSame('9f0c2a7e-5b1d-4c8e-a3f2-7d6e1b0c4a91', $t->getId());
        self::assertSame('App\\Jobs\\SendWelcomeEmail', $t->getName());
        self::assertSame('{"user_id":42,"template":"welcome","locale":"en"}', $t->getPayload());
        self::assertSame('emails', $t->getPipeline());
        self::assertSame('emails', $t->getQueue());
        self::assertSame('amqp', $t->getDriver());
        self::assertSame(1, $t->getAttempt());
        self::assertSame(['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'], $t->getHeader('traceparent'));
        self::assertSame(['traceparent', 'x-attempt'], array_keys($t->getHeaders()));
        self::assertNull($t->getPartition());
        self::assertNull($t->getOffset());
        self::assertFalse($t->isCompleted());
    }

    public function testKafkaContextGivesPartitionAndOffset(): void
    {
        $t = $this->task(['id' => 'k', 'job' => 'J', 'driver' => 'kafka', 'pipeline' => 'p', 'queue' => 'orders',
            'topic' => 'orders', 'partition' => 3, 'offset' => 9007199254740993, 'headers' => ['x-attempt' => ['4']]]);

        self::assertSame(3, $t->getPartition());
        self::assertSame(9007199254740993, $t->getOffset());
        self::assertSame('orders', $t->getQueue());
        self::assertSame(4, $t->getAttempt());
    }

    public function testMissingFieldsHaveDefaults(): void
    {
        $t = $this->task(['pipeline' => 'default', 'headers' => null]);

        self::assertSame('', $t->getId());
        self::assertSame('unknown', $t->getDriver());
        self::assertSame('default', $t->getQueue(), 'memory jobs have no queue: the pipeline stands in');
        self::assertSame([], $t->getHeaders());
        self::assertSame(1, $t->getAttempt());
    }

    public function testAttemptIgnoresGarbage(): void
    {
        self::assertSame(1, $this->task(['headers' => ['x-attempt' => ['zero']]])->getAttempt());
        self::assertSame(1, $this->task(['headers' => ['x-attempt' => ['0']]])->getAttempt());
        self::assertSame(1, $this->task(['headers' => ['x-attempt' => []]])->getAttempt());
        self::assertSame(12, $this->task(['headers' => ['X-Attempt' => ['12']]])->getAttempt());
    }

    public function testHeaderLookupIsExactFirstThenCaseInsensitive(): void
    {
        $t = $this->task(['headers' => ['Content-Type' => ['a', 'b'], 'content-type' => ['c']]]);

        self::assertSame(['c'], $t->getHeader('content-type'));
        self::assertSame(['a', 'b'], $t->getHeader('Content-Type'));
        self::assertSame('a, b', $t->getHeaderLine('CONTENT-TYPE'));
        self::assertTrue($t->hasHeader('CONTENT-type'));
        self::assertFalse($t->hasHeader('x-missing'));
        self::assertSame([], $t->getHeader('x-missing'));
        self::assertSame('', $t->getHeaderLine('x-missing'));
    }

    public function testTraceparentAndTracestateReadTheTraceHeaders(): void
    {
        $tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
        $t = $this->task(['headers' => ['Traceparent' => [$tp], 'tracestate' => ['v=1']]]);

        self::assertSame($tp, $t->getTraceparent());
        self::assertSame('v=1', $t->getTracestate());
        self::assertNull($this->task(['headers' => ['x' => ['y']]])->getTraceparent());
        self::assertNull($this->task()->getTracestate());
    }

    public function testAHeaderWithANullValueHasNoValues(): void
    {
        // The supervisor writes "name":null for a header without values.
        $t = $this->task(json_decode('{"headers":{"x-empty":null,"x-attempt":["2"]}}', true, 512, JSON_THROW_ON_ERROR));

        self::assertTrue($t->hasHeader('X-Empty'));
        self::assertSame([], $t->getHeader('x-empty'));
        self::assertSame('', $t->getHeaderLine('x-empty'));
        self::assertSame(['x-empty' => [], 'x-attempt' => ['2']], $t->getHeaders());
        self::assertSame(['a'], $t->withAddedHeader('x-empty', 'a')->getHeader('x-empty'));
        self::assertSame(2, $t->getAttempt());
    }

    public function testAckSendsTheGoldenAckBody(): void
    {
        $t = $this->goldenTask();
        $t->ack();

        self::assertSame([Golden::body('reply_ack')], $this->sent);
        self::assertTrue($t->isCompleted());
        self::assertTrue($t->isSuccessful());
        self::assertFalse($t->isFails());
    }

    public function testNackSendsTheGoldenNackBody(): void
    {
        $t = $this->goldenTask();
        $t->nack('invalid payload: missing user_id');

        self::assertSame([Golden::body('reply_nack')], $this->sent);
        self::assertTrue($t->isFails());
        self::assertFalse($t->isSuccessful());
    }

    public function testNackWithRedeliveryAndDelaySendsTheGoldenBody(): void
    {
        $this->goldenTask()->withDelay(5)->nack('database is busy', true);

        self::assertSame([Golden::body('reply_nack_requeue')], $this->sent);
    }

    public function testNackDoesNotSendHeaders(): void
    {
        $this->goldenTask()->withHeader('x-a', 'b')->nack('no', redelivery: true);

        self::assertSame(['{"type":3,"data":{"message":"no","requeue":true}}'], $this->sent);
    }

    public function testRequeueSendsTheGoldenRequeueBody(): void
    {
        $this->goldenTask()->withDelay(30)->withHeader('x-retry-reason', 'rate-limit')->requeue('rate limited');

        self::assertSame([Golden::body('reply_requeue')], $this->sent);
    }

    public function testRequeueSendsOnlyChangedHeaders(): void
    {
        $t = $this->goldenTask();
        $t->withHeader('x-attempt', ['7'])->withAddedHeader('x-tag', 'a')->withAddedHeader('x-tag', ['b', 'c'])->requeue('later');

        self::assertSame(['{"type":4,"data":{"message":"later","headers":{"x-attempt":["7"],"x-tag":["a","b","c"]}}}'], $this->sent);
    }

    public function testRequeueWithoutChangesOmitsHeadersAndDelay(): void
    {
        $this->goldenTask()->requeue('again');

        self::assertSame(['{"type":4,"data":{"message":"again"}}'], $this->sent);
    }

    public function testHeadersWithNumericNamesStayAJsonObject(): void
    {
        $this->task()->withHeader('0', 'zero')->requeue('r');

        self::assertSame(['{"type":4,"data":{"message":"r","headers":{"0":["zero"]}}}'], $this->sent);
    }

    public function testWithHeaderAndWithDelayReturnClonesAndLeaveTheOriginal(): void
    {
        $t = $this->goldenTask();
        $c = $t->withDelay(9)->withHeader('X-ATTEMPT', '3');

        self::assertNotSame($t, $c);
        self::assertSame(0, $t->getDelay());
        self::assertSame(9, $c->getDelay());
        self::assertSame(['1'], $t->getHeader('x-attempt'));
        self::assertSame(['3'], $c->getHeader('x-attempt'));
        self::assertSame(3, $c->getAttempt());
        self::assertSame(['traceparent', 'X-ATTEMPT'], array_keys($c->getHeaders()), 'the header keeps one spelling');
        self::assertSame($t->getPayload(), $c->getPayload());
    }

    public function testNegativeDelayIsRejected(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        $this->task()->withDelay(-1);
    }

    public function testOnlyTheFirstReplyCounts(): void
    {
        $t = $this->goldenTask();
        $t->nack('first');
        $t->ack();
        $t->requeue('third');
        $t->nack('fourth', true);

        self::assertSame(['{"type":3,"data":{"message":"first","requeue":false}}'], $this->sent);
        self::assertFalse($t->isSuccessful());
    }

    public function testClonesShareTheFirstReply(): void
    {
        $t = $this->goldenTask();
        $clone = $t->withDelay(3);
        $clone->requeue('by the clone');
        $t->ack();
        $t->withHeader('x', 'y')->nack('late');

        self::assertSame(['{"type":4,"data":{"message":"by the clone","delay_seconds":3}}'], $this->sent);
        self::assertTrue($t->isCompleted());
        self::assertTrue($t->withDelay(1)->isFails());
    }

    public function testThrowableReasonNamesClassMessageAndPlace(): void
    {
        $e = new \RuntimeException("SMTP \"refused\"\n/ü");
        $this->goldenTask()->nack($e, true);

        $data = json_decode($this->sent[0], true, 512, JSON_THROW_ON_ERROR)['data'];
        self::assertSame(sprintf("RuntimeException: SMTP \"refused\"\n/ü in %s:%d", __FILE__, $e->getLine()), $data['message']);
        self::assertTrue($data['requeue']);
    }

    public function testStringableReasonAndInvalidUtf8AreEncoded(): void
    {
        $reason = new class () implements \Stringable {
            public function __toString(): string
            {
                return "bad \xff byte";
            }
        };
        $this->task()->requeue($reason);

        self::assertSame(['{"type":4,"data":{"message":"bad ' . "\u{FFFD}" . ' byte"}}'], $this->sent);
    }
}
