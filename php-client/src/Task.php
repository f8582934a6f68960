<?php

declare(strict_types=1);

namespace Pipevisor;

/**
 * One job received from the supervisor, and the way to settle it.
 *
 * Settle every task exactly once with ack(), nack() or requeue():
 *
 * - ack()                          the job is done (reply type 2).
 * - nack($reason)                  the job failed for good: it goes to the
 *                                  pipeline's dead letter (type 3, requeue false).
 * - nack($reason, true)            the job failed, try again after withDelay()
 *                                  seconds; counts an attempt (type 3, requeue true).
 * - requeue($reason)               back to the queue after withDelay() seconds
 *                                  with the headers set by withHeader() merged
 *                                  in; counts an attempt (type 4).
 * - error($reason)                 an ERROR frame: retried after the pipeline's
 *                                  backoff; counts an attempt.
 * - stopWorker()                   retire this worker; the job runs on another
 *                                  one, no attempt spent.
 *
 * Only the first reply counts: later calls on the task, or on any clone made
 * with withDelay()/withHeader(), are ignored. A task the worker loop leaves
 * without a reply is failed by the next Consumer::waitTask() (see there).
 *
 * An exception thrown by your code is yours to handle: if it escapes the
 * loop the worker process dies, and the supervisor retries the job with
 * backoff on another worker. Catch it and nack() to decide yourself:
 *
 *     try { handle($task); $task->ack(); }
 *     catch (\Throwable $e) { $task->nack($e, redelivery: true); }
 *
 * Tasks are immutable apart from their reply state: withDelay() and
 * withHeader() return modified clones.
 */
final class Task
{
    public const REPLY_ACK = 2;
    public const REPLY_NACK = 3;
    public const REPLY_REQUEUE = 4;
    /** error() was sent: an ERROR frame, not a reply body. */
    public const REPLY_ERROR = -1;
    /** stopWorker() was sent: the {"stop":true} context, no body. */
    public const REPLY_STOP = -2;

    /**
     * Reply bodies are JSON {"type": N, "data": {...}}; fields that are zero
     * or empty are left out, as the supervisor's Go encoder does, so both
     * produce the same bytes. Reply body of ack():
     */
    public const ACK_BODY = '{"type":2,"data":{}}';

    private const JSON_FLAGS = \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE | \JSON_INVALID_UTF8_SUBSTITUTE | \JSON_THROW_ON_ERROR;

    /** @var array<string, mixed> the decoded job context */
    private readonly array $context;
    /** @var array<string, list<string>> headers as received, merged with withHeader() changes */
    private array $headers;
    /** @var array<string, list<string>> headers set through withHeader()/withAddedHeader() */
    private array $changed = [];
    private int $delay = 0;
    /** Shared by all clones of this task, so only the first reply of any of them counts. */
    private readonly \stdClass $state;

    /**
     * Builds a task from the job context JSON (decoded) and the job body.
     * The Consumer does this; build one yourself to unit-test a handler.
     *
     * @param array<string, mixed> $context decoded context: id, job, pipeline,
     *        driver, queue, headers (name => list of string values), and for
     *        Kafka topic, partition, offset
     * @param \Closure(string, int): void $reply called once, for the first
     *        reply, with the body and the REPLY_* type: the JSON body for
     *        ack()/nack()/requeue(), the message text for error()
     *        (REPLY_ERROR), "" for stopWorker() (REPLY_STOP). It may throw
     *        RelayException.
     */
    public function __construct(array $context, private readonly string $payload, \Closure $reply)
    {
        $this->context = $context;
        $h = $context['headers'] ?? null;
        // The supervisor writes "name":null for a header without values: an empty list.
        $this->headers = \is_array($h) ? array_map(static fn (mixed $v): array => $v ?? [], $h) : [];
        $this->state = new \stdClass();
        $this->state->reply = $reply;
        $this->state->type = null;
    }

    /** The job id (unique per job; a UUID unless the producer chose one). */
    public function getId(): string
    {
        return (string) ($this->context['id'] ?? '');
    }

    /** The job name the producer gave (usually a class name). */
    public function getName(): string
    {
        return (string) ($this->context['job'] ?? '');
    }

    /** The job body, byte for byte as pushed. */
    public function getPayload(): string
    {
        return $this->payload;
    }

    /** The pipeline the job came from. */
    public function getPipeline(): string
    {
        return (string) ($this->context['pipeline'] ?? '');
    }

    /**
     * The broker queue (AMQP/SQS queue, Kafka topic); the pipeline name for
     * drivers that have no separate queue (memory).
     */
    public function getQueue(): string
    {
        return (string) ($this->context['queue'] ?? $this->context['topic'] ?? $this->context['pipeline'] ?? '');
    }

    /** The driver: memory, amqp, kafka, sqs; "unknown" if the supervisor did not say. */
    public function getDriver(): string
    {
        return (string) ($this->context['driver'] ?? 'unknown');
    }

    /**
     * Which delivery this is: 1 the first time, 2 after one retry, and so on
     * (the x-attempt header; 1 when absent or invalid).
     */
    public function getAttempt(): int
    {
        $v = $this->getHeader('x-attempt')[0] ?? '';
        $n = (string) (int) $v === $v ? (int) $v : 0;

        return $n >= 1 ? $n : 1;
    }

    /** Kafka partition of the record; null for other drivers. */
    public function getPartition(): ?int
    {
        return isset($this->context['partition']) ? (int) $this->context['partition'] : null;
    }

    /** Kafka offset of the record; null for other drivers. */
    public function getOffset(): ?int
    {
        return isset($this->context['offset']) ? (int) $this->context['offset'] : null;
    }

    /**
     * All headers, name => list of values, including changes made with
     * withHeader() on this instance.
     *
     * @return array<string, list<string>>
     */
    public function getHeaders(): array
    {
        return $this->headers;
    }

    /** Whether the header exists; the name is matched exactly first, then case-insensitively. */
    public function hasHeader(string $name): bool
    {
        return $this->headerKey($name) !== null;
    }

    /**
     * The values of one header (empty list when absent); the name is matched
     * exactly first, then case-insensitively.
     *
     * @return list<string>
     */
    public function getHeader(string $name): array
    {
        $k = $this->headerKey($name);

        return $k === null ? [] : $this->headers[$k];
    }

    /** The values of one header joined with ", " ("" when absent). */
    public function getHeaderLine(string $name): string
    {
        return implode(', ', $this->getHeader($name));
    }

    /**
     * The W3C traceparent of the job, or null without tracing. With otel:
     * configured the supervisor sets it to its push span (a child of the
     * producer's own traceparent when the job was pushed with one): start
     * the worker's spans as its children to continue the trace.
     */
    public function getTraceparent(): ?string
    {
        return $this->getHeader('traceparent')[0] ?? null;
    }

    /** The W3C tracestate that goes with getTraceparent(), or null. */
    public function getTracestate(): ?string
    {
        return $this->getHeader('tracestate')[0] ?? null;
    }

    /** Seconds requeue() and nack($reason, true) wait before the job is visible again. */
    public function getDelay(): int
    {
        return $this->delay;
    }

    /**
     * A clone whose requeue()/nack(..., true) delays the job by $seconds.
     *
     * @throws \InvalidArgumentException for a negative delay
     */
    public function withDelay(int $seconds): self
    {
        if ($seconds < 0) {
            throw new \InvalidArgumentException(sprintf('task: delay must be >= 0 seconds, got %d', $seconds));
        }
        $t = clone $this;
        $t->delay = $seconds;

        return $t;
    }

    /**
     * A clone with the header set to $value (replacing earlier values). The
     * headers set this way are sent by requeue() and merged into the job's
     * headers by the supervisor; headers cannot be removed that way.
     *
     * @param string|list<string> $value
     */
    public function withHeader(string $name, string|array $value): self
    {
        $t = clone $this;
        $k = $t->headerKey($name) ?? $name;
        unset($t->headers[$k], $t->changed[$k]);
        $t->headers[$name] = $t->changed[$name] = self::values($value);

        return $t;
    }

    /**
     * A clone with $value appended to the header's values (see withHeader()).
     *
     * @param string|list<string> $value
     */
    public function withAddedHeader(string $name, string|array $value): self
    {
        $values = array_merge($this->getHeader($name), self::values($value));

        return $this->withHeader($this->headerKey($name) ?? $name, $values);
    }

    /** Acknowledges the job: it is done and leaves the queue. */
    public function ack(): void
    {
        $this->respond(self::REPLY_ACK, self::ACK_BODY);
    }

    /**
     * Fails the job. Without redelivery it goes to the pipeline's dead
     * letter target (or is dropped when there is none). With redelivery it is
     * retried after getDelay() seconds, which counts an attempt; past the
     * pipeline's max_attempts it goes to the dead letter target.
     * Headers set with withHeader() are not sent; use requeue() for that.
     */
    public function nack(string|\Stringable|\Throwable $reason, bool $redelivery = false): void
    {
        if ($this->state->type !== null) {
            return;
        }
        $data = ['message' => self::reason($reason), 'requeue' => $redelivery];
        if ($this->delay > 0) {
            $data['delay_seconds'] = $this->delay;
        }
        $this->respond(self::REPLY_NACK, json_encode(['type' => self::REPLY_NACK, 'data' => $data], self::JSON_FLAGS));
    }

    /**
     * Puts the job back in its queue after getDelay() seconds with the
     * headers set through withHeader() merged into its headers (only those
     * are sent, so the supervisor sees what changed). Counts an attempt.
     */
    public function requeue(string|\Stringable|\Throwable $reason): void
    {
        if ($this->state->type !== null) {
            return;
        }
        $data = ['message' => self::reason($reason)];
        if ($this->delay > 0) {
            $data['delay_seconds'] = $this->delay;
        }
        if ($this->changed !== []) {
            $data['headers'] = (object) $this->changed;
        }
        $this->respond(self::REPLY_REQUEUE, json_encode(['type' => self::REPLY_REQUEUE, 'data' => $data], self::JSON_FLAGS));
    }

    /**
     * Reports a failure with an ERROR frame (RoadRunner's Worker::error()):
     * the supervisor retries the job after the pipeline's backoff, counting
     * an attempt, and dead-letters it past max_attempts. The worker stays.
     * Use nack($reason, true) with withDelay() to choose the delay yourself.
     */
    public function error(string|\Stringable|\Throwable $reason): void
    {
        $this->respond(self::REPLY_ERROR, self::reason($reason));
    }

    /**
     * Asks the supervisor to retire this worker instead of answering the job
     * (e.g. when the process is in a bad state): the job runs on another
     * worker without spending an attempt, and this worker is replaced. The
     * next Consumer::waitTask() returns null, so the loop ends and the
     * script should exit.
     */
    public function stopWorker(): void
    {
        $this->respond(self::REPLY_STOP, '');
    }

    /** Whether a reply was sent for this task (by it or by any of its clones). */
    public function isCompleted(): bool
    {
        return $this->state->type !== null;
    }

    /** Whether the reply sent was an ack. */
    public function isSuccessful(): bool
    {
        return $this->state->type === self::REPLY_ACK;
    }

    /** Whether the reply sent was a nack, a requeue or an error. */
    public function isFails(): bool
    {
        return \in_array($this->state->type, [self::REPLY_NACK, self::REPLY_REQUEUE, self::REPLY_ERROR], true);
    }

    /** The REPLY_* type sent for this task, or null before any reply. */
    public function getReplyType(): ?int
    {
        return $this->state->type;
    }

    private function respond(int $type, string $body): void
    {
        if ($this->state->type !== null) {
            return;
        }
        $this->state->type = $type;
        ($this->state->reply)($body, $type);
    }

    private function headerKey(string $name): ?string
    {
        if (isset($this->headers[$name])) {
            return $name;
        }
        foreach ($this->headers as $k => $_) {
            if (strcasecmp((string) $k, $name) === 0) {
                return (string) $k;
            }
        }

        return null;
    }

    /** @return list<string> */
    private static function values(mixed $v): array
    {
        if (\is_array($v)) {
            return array_values(array_map(static fn (mixed $x): string => \is_scalar($x) ? (string) $x : json_encode($x), $v));
        }

        return $v === null ? [] : [\is_scalar($v) ? (string) $v : (string) json_encode($v)];
    }

    private static function reason(string|\Stringable|\Throwable $reason): string
    {
        if ($reason instanceof \Throwable) {
            return sprintf('%s: %s in %s:%d', $reason::class, $reason->getMessage(), $reason->getFile(), $reason->getLine());
        }

        return (string) $reason;
    }
}
