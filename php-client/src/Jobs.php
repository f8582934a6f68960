<?php

declare(strict_types=1);

namespace Pipevisor;

/**
 * The producer side: pushes jobs and steers pipelines of a running
 * supervisor over its jobs.* RPC (the JSON codec; no PHP extension needed).
 *
 *     $jobs = new Pipevisor\Jobs();                 // RR_RPC, or tcp://127.0.0.1:6001
 *     $id = $jobs->push('emails', 'App\Jobs\SendMail', json_encode($mail), [
 *         'delay' => 30, 'key' => 'customer-42', 'headers' => ['x-tenant' => 'acme'],
 *     ]);
 *
 * Every method returns once the supervisor has answered; push() and
 * pushBatch() return after the broker confirmed the publish. Errors the
 * supervisor reports (unknown pipeline, invalid declare, ...) are thrown as
 * RPCException with the supervisor's message; so are transport failures.
 * push() and pushBatch() throw PushException (an RPCException) that sorts
 * the job ids into confirmed, failed (not in the queue: safe to push again)
 * and in doubt (sent, confirm lost: may be in the queue; pushing again may
 * duplicate them).
 *
 * Push options (all optional):
 *   - id        string  job id (default: a random UUIDv4, returned by push)
 *   - delay     int     seconds before the job becomes visible (>= 0)
 *   - priority  int     0 = the pipeline's priority
 *   - key       string  ordering key: jobs with the same key run in order
 *                       (Kafka record key, SQS FIFO group, memory lane)
 *   - headers   array   name => string or list of strings
 *   - autoAck   bool    ack on receipt, before the worker runs the job
 */
final class Jobs
{
    private const OPTION_KEYS = ['id' => true, 'delay' => true, 'priority' => true, 'key' => true, 'headers' => true, 'autoAck' => true];

    private readonly RPC $rpc;

    /**
     * @param null|RPC|string $rpc an RPC client, an address (tcp://host:port,
     *        unix:///path), or null for RR_RPC / tcp://127.0.0.1:6001
     */
    public function __construct(RPC|string|null $rpc = null)
    {
        $this->rpc = match (true) {
            $rpc instanceof RPC => $rpc,
            \is_string($rpc) => new RPC($rpc),
            default => RPC::fromEnv(),
        };
    }

    /** The RPC client underneath. */
    public function getRPC(): RPC
    {
        return $this->rpc;
    }

    /**
     * Pushes one job (jobs.Push).
     *
     * @param array{id?: string, delay?: int, priority?: int, key?: string, headers?: array<string, string|list<string>>, autoAck?: bool} $options
     * @return string the job id
     * @throws PushException (an RPCException) when the job was not confirmed:
     *         getFailed() or getInDoubt() holds its id
     * @throws \InvalidArgumentException for an unknown option or a value of the wrong type
     */
    public function push(string $pipeline, string $job, string $payload, array $options = []): string
    {
        $j = self::job($pipeline, $job, $payload, $options);
        $this->pushCall('jobs.Push', ['job' => $j], [$j['id']]);

        return $j['id'];
    }

    /**
     * Pushes many jobs in one call (jobs.PushBatch). An invalid job or an
     * unknown pipeline publishes none; otherwise the broker may confirm some
     * jobs and not others, and the PushException says which. Each job is an
     * array with the keys pipeline, job, payload and any of the push options:
     *
     *     $jobs->pushBatch([
     *         ['pipeline' => 'images', 'job' => 'Resize', 'payload' => 'img-1', 'key' => 'album-7'],
     *         ['pipeline' => 'images', 'job' => 'Resize', 'payload' => 'img-2', 'priority' => 1],
     *     ]);
     *
     * @param iterable<array<string, mixed>> $jobs
     * @return list<string> the job ids, in order
     * @throws PushException (an RPCException) when not every job was
     *         confirmed: getConfirmed(), getFailed() and getInDoubt() sort the ids
     * @throws \InvalidArgumentException for a job without pipeline/job/payload or with an unknown key
     */
    public function pushBatch(iterable $jobs): array
    {
        $list = [];
        foreach ($jobs as $i => $j) {
            if (!\is_array($j)) {
                throw new \InvalidArgumentException(sprintf('jobs: batch entry %s is not an array', $i));
            }
            foreach (['pipeline', 'job', 'payload'] as $k) {
                if (!isset($j[$k]) || !\is_string($j[$k])) {
                    throw new \InvalidArgumentException(sprintf('jobs: batch entry %s: "%s" must be a string', $i, $k));
                }
            }
            $opts = $j;
            unset($opts['pipeline'], $opts['job'], $opts['payload']);
            $list[] = self::job($j['pipeline'], $j['job'], $j['payload'], $opts);
        }
        if ($list === []) {
            return [];
        }
        $ids = array_column($list, 'id');
        $this->pushCall('jobs.PushBatch', ['jobs' => $list], $ids);

        return $ids;
    }

    /**
     * Calls a push method for the jobs $ids; any failure becomes a
     * PushException that sorts them into confirmed, failed and in doubt.
     *
     * @param array<string, mixed> $body
     * @param list<string> $ids
     * @throws PushException
     */
    private function pushCall(string $method, array $body, array $ids): void
    {
        try {
            $this->rpc->connect();
        } catch (RPCException $e) {
            throw PushException::fromRPC($e, $method, $ids, false);
        }
        try {
            $this->rpc->call($method, $body);
        } catch (PushException $e) {
            throw $e;
        } catch (RPCException $e) {
            throw PushException::fromRPC($e, $method, $ids);
        }
    }

    /**
     * Stops consuming the pipelines (jobs.Pause); pushing still works.
     *
     * @throws RPCException e.g. for an unknown pipeline
     */
    public function pause(string ...$pipelines): void
    {
        $this->rpc->call('jobs.Pause', ['pipelines' => array_values($pipelines)]);
    }

    /**
     * Starts consuming the pipelines again (jobs.Resume); also starts a
     * declared pipeline that is not consumed yet.
     *
     * @throws RPCException e.g. for an unknown pipeline
     */
    public function resume(string ...$pipelines): void
    {
        $this->rpc->call('jobs.Resume', ['pipelines' => array_values($pipelines)]);
    }

    /**
     * Names of all pipelines (jobs.List).
     *
     * @return list<string>
     */
    public function list(): array
    {
        return array_values($this->rpc->call('jobs.List', [])['pipelines'] ?? []);
    }

    /**
     * State of every pipeline (jobs.Stat). Each entry has all keys, with
     * 0 / false / "" where the supervisor left a field out.
     *
     * RoadRunner's fields mean what RoadRunner's driver reports:
     *   - active: the backlog (memory: jobs queued or running; amqp and
     *     sqs: messages ready in the queue; kafka: 0)
     *   - delayed: jobs waiting for a delay (amqp: messages in the
     *     pipeline's delay queues; kafka: 0)
     *   - reserved: sqs messages received and not yet deleted; others 0
     *   - ready: the pipeline is consuming; pipeline, driver, queue, priority
     *
     * Pipevisor's exact numbers: queued (waiting on the broker, -1
     * unknown), running (received and not settled), waiting_delay (-1
     * unknown), acked, retried, requeued, dead (counters since start),
     * consuming, error (why not consuming).
     *
     * @return list<array{pipeline: string, driver: string, queue: string, active: int, delayed: int, reserved: int, ready: bool, priority: int, queued: int, acked: int, retried: int, requeued: int, dead: int, consuming: bool, error: string, running: int, waiting_delay: int}>
     */
    public function stat(): array
    {
        $zero = ['pipeline' => '', 'driver' => '', 'queue' => '', 'active' => 0, 'delayed' => 0, 'reserved' => 0,
            'ready' => false, 'priority' => 0, 'queued' => 0, 'acked' => 0, 'retried' => 0, 'requeued' => 0,
            'dead' => 0, 'consuming' => false, 'error' => '', 'running' => 0, 'waiting_delay' => 0];
        $out = [];
        foreach ($this->rpc->call('jobs.Stat', [])['stats'] ?? [] as $s) {
            $out[] = array_replace($zero, array_intersect_key((array) $s, $zero));
        }

        return $out;
    }

    /**
     * The state of one pipeline, as RoadRunner SDK's
     * Queue::getPipelineStat() gives it: the jobs.Stat entry of $pipeline
     * (see stat()), or null when there is no such pipeline.
     *
     * @return null|array{pipeline: string, driver: string, queue: string, active: int, delayed: int, reserved: int, ready: bool, priority: int, queued: int, acked: int, retried: int, requeued: int, dead: int, consuming: bool, error: string, running: int, waiting_delay: int}
     */
    public function pipelineStat(string $pipeline): ?array
    {
        foreach ($this->stat() as $s) {
            if ($s['pipeline'] === $pipeline) {
                return $s;
            }
        }

        return null;
    }

    /**
     * Creates a pipeline at runtime (jobs.Declare) with the same keys as a
     * pipeline in .rr.yaml: name, driver, priority and the driver's config
     * keys, or from a CreateInfo (MemoryCreateInfo, AMQPCreateInfo,
     * SQSCreateInfo, KafkaCreateInfo), which sends what RoadRunner's PHP
     * SDK sends. Values are sent as strings: numbers as digits, booleans as
     * "true"/"false", arrays (nested options) as JSON text.
     *
     * As in RoadRunner, the pipeline is consumed at once only when its name
     * is listed in jobs.consume; otherwise call resume() to start it
     * (pushing works before).
     *
     * @param array<string, scalar|array<mixed>>|Queue\CreateInfo $pipeline
     * @throws RPCException when the supervisor rejects the declaration (its message names the key)
     */
    public function declare(array|Queue\CreateInfo $pipeline): void
    {
        if ($pipeline instanceof Queue\CreateInfo) {
            $pipeline = $pipeline->toArray();
        }
        $m = [];
        foreach ($pipeline as $k => $v) {
            $m[(string) $k] = match (true) {
                \is_bool($v) => $v ? 'true' : 'false',
                \is_array($v) => json_encode($v, \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE | \JSON_THROW_ON_ERROR),
                \is_scalar($v) => (string) $v,
                default => throw new \InvalidArgumentException(sprintf('jobs: declare key "%s" has a %s value', $k, get_debug_type($v))),
            };
        }
        $this->rpc->call('jobs.Declare', ['pipeline' => (object) $m]);
    }

    /**
     * RoadRunner SDK's Jobs::create(): declares the pipeline of $info and
     * returns its name (start it with resume() unless it is in
     * jobs.consume).
     *
     * @throws RPCException when the supervisor rejects the declaration
     */
    public function create(Queue\CreateInfo $info): string
    {
        $this->declare($info);

        return $info->name;
    }

    /**
     * Removes pipelines (jobs.Destroy): consuming stops, running jobs finish,
     * unstarted ones go back to their broker.
     *
     * @return list<string> the pipelines destroyed
     * @throws RPCException e.g. for an unknown pipeline
     */
    public function destroy(string ...$pipelines): array
    {
        return array_values($this->rpc->call('jobs.Destroy', ['pipelines' => array_values($pipelines)])['pipelines'] ?? []);
    }

    /**
     * Failed (dead) jobs (jobs.FailedList): of $pipeline, or of every
     * pipeline whose driver keeps them when null; at most $limit (0: all).
     * Each has why it died ("reason": the worker's NACK message, the error
     * frame, or a crash or exec_ttl with the tail of the worker's stderr),
     * the attempt that died and when (null when the broker did not record
     * it).
     *
     * @return list<array{id: string, pipeline: string, job: string, payload: string, headers: array<string, list<string>>, priority: int, key: string, attempts: int, reason: string, diedAt: ?\DateTimeImmutable}>
     * @throws RPCException e.g. for an unknown pipeline or one without a dead-letter target
     */
    public function failedList(?string $pipeline = null, int $limit = 0): array
    {
        if ($limit < 0) {
            throw new \InvalidArgumentException('jobs: the limit must not be negative');
        }
        $body = [];
        if ($pipeline !== null && $pipeline !== '') {
            $body['pipeline'] = $pipeline;
        }
        if ($limit > 0) {
            $body['limit'] = $limit;
        }
        $out = [];
        foreach ($this->rpc->call('jobs.FailedList', $body)['jobs'] ?? [] as $f) {
            $out[] = self::failedJob((array) $f);
        }

        return $out;
    }

    /**
     * One failed job with its payload (jobs.FailedShow), looked for in
     * $pipeline or in every pipeline when null.
     *
     * @return array{id: string, pipeline: string, job: string, payload: string, headers: array<string, list<string>>, priority: int, key: string, attempts: int, reason: string, diedAt: ?\DateTimeImmutable}
     * @throws RPCException when no pipeline holds it ("no such failed job")
     */
    public function failedShow(string $id, ?string $pipeline = null): array
    {
        $body = ['id' => $id];
        if ($pipeline !== null && $pipeline !== '') {
            $body['pipeline'] = $pipeline;
        }

        return self::failedJob($this->rpc->call('jobs.FailedShow', $body));
    }

    /**
     * Pushes failed jobs back to their pipelines (jobs.FailedRetry) as
     * attempt 1 with their headers; each leaves the failed jobs only once
     * the broker confirmed its push.
     *
     * @return list<string> the ids retried
     * @throws RPCException naming the ids that no pipeline holds (the others were retried)
     */
    public function failedRetry(string ...$ids): array
    {
        return $this->failedCall('jobs.FailedRetry', ['ids' => array_values($ids)], $ids === []);
    }

    /**
     * Pushes every failed job of $pipeline (of every pipeline when null)
     * back, as failedRetry() does.
     *
     * @return list<string> the ids retried
     */
    public function failedRetryAll(?string $pipeline = null): array
    {
        return $this->failedCall('jobs.FailedRetry', self::allBody($pipeline), false);
    }

    /**
     * Deletes failed jobs (jobs.FailedRemove).
     *
     * @return list<string> the ids removed
     * @throws RPCException naming the ids that no pipeline holds (the others were removed)
     */
    public function failedRemove(string ...$ids): array
    {
        return $this->failedCall('jobs.FailedRemove', ['ids' => array_values($ids)], $ids === []);
    }

    /**
     * Deletes every failed job of $pipeline (of every pipeline when null).
     *
     * @return list<string> the ids removed
     */
    public function failedRemoveAll(?string $pipeline = null): array
    {
        return $this->failedCall('jobs.FailedRemove', self::allBody($pipeline), false);
    }

    /** @return array<string, mixed> */
    private static function allBody(?string $pipeline): array
    {
        $body = ['all' => true];
        if ($pipeline !== null && $pipeline !== '') {
            $body['pipeline'] = $pipeline;
        }

        return $body;
    }

    /**
     * @param array<string, mixed> $body
     * @return list<string>
     */
    private function failedCall(string $method, array $body, bool $nothing): array
    {
        if ($nothing) {
            return [];
        }

        return array_values($this->rpc->call($method, $body)['ids'] ?? []);
    }

    /**
     * Reads a FailedJob of the wire (see rpc/doc.go).
     *
     * @param array<string, mixed> $f
     * @return array{id: string, pipeline: string, job: string, payload: string, headers: array<string, list<string>>, priority: int, key: string, attempts: int, reason: string, diedAt: ?\DateTimeImmutable}
     */
    private static function failedJob(array $f): array
    {
        $j = (array) ($f['job'] ?? []);
        $o = (array) ($j['options'] ?? []);
        $headers = [];
        foreach ((array) ($j['headers'] ?? []) as $k => $v) {
            $headers[(string) $k] = array_values(array_map('strval', (array) (((array) $v)['value'] ?? [])));
        }
        $ns = (int) ($f['died_at'] ?? 0);
        $at = null;
        if ($ns !== 0) {
            $at = \DateTimeImmutable::createFromFormat('U.u', sprintf('%d.%06d', intdiv($ns, 1000000000), intdiv($ns % 1000000000, 1000)));
            $at = $at === false ? null : $at;
        }

        return [
            'id' => (string) ($j['id'] ?? ''),
            'pipeline' => (string) ($o['pipeline'] ?? ''),
            'job' => (string) ($j['job'] ?? ''),
            'payload' => (string) base64_decode((string) ($j['payload'] ?? ''), true),
            'headers' => $headers,
            'priority' => (int) ($o['priority'] ?? 0),
            'key' => (string) ($o['key'] ?? ''),
            'attempts' => (int) ($f['attempts'] ?? 0),
            'reason' => (string) ($f['reason'] ?? ''),
            'diedAt' => $at,
        ];
    }

    /**
     * The JSON shape of one job (see rpc/doc.go): zero-valued fields are left
     * out, in the field order of the Go encoder.
     *
     * @param array<string, mixed> $options
     * @return array<string, mixed>
     */
    private static function job(string $pipeline, string $job, string $payload, array $options): array
    {
        if ($pipeline === '') {
            throw new \InvalidArgumentException('jobs: the pipeline name is empty');
        }
        foreach ($options as $k => $_) {
            if (!isset(self::OPTION_KEYS[$k])) {
                throw new \InvalidArgumentException(sprintf('jobs: unknown push option "%s" (known: %s)', $k, implode(', ', array_keys(self::OPTION_KEYS))));
            }
        }
        $id = $options['id'] ?? self::uuid4();
        $delay = $options['delay'] ?? 0;
        $priority = $options['priority'] ?? 0;
        $key = $options['key'] ?? '';
        $autoAck = $options['autoAck'] ?? false;
        if (!\is_string($id) || !\is_int($delay) || !\is_int($priority) || !\is_string($key) || !\is_bool($autoAck)) {
            throw new \InvalidArgumentException('jobs: push options want id: string, delay: int, priority: int, key: string, autoAck: bool');
        }
        if ($delay < 0) {
            throw new \InvalidArgumentException(sprintf('jobs: delay must be >= 0 seconds, got %d', $delay));
        }

        $j = ['job' => $job, 'id' => $id, 'payload' => base64_encode($payload)];
        if ($payload === '') {
            unset($j['payload']);
        }
        $headers = self::headers($options['headers'] ?? []);
        if ($headers !== []) {
            $j['headers'] = (object) $headers;
        }
        $o = [];
        if ($priority !== 0) {
            $o['priority'] = $priority;
        }
        $o['pipeline'] = $pipeline;
        if ($delay !== 0) {
            $o['delay'] = $delay;
        }
        if ($autoAck) {
            $o['auto_ack'] = true;
        }
        if ($key !== '') {
            $o['key'] = $key;
        }
        $j['options'] = $o;

        return $j;
    }

    /** @return array<string, array{value: list<string>}> */
    private static function headers(mixed $headers): array
    {
        if (!\is_array($headers)) {
            throw new \InvalidArgumentException('jobs: headers must be an array of name => string|list<string>');
        }
        $out = [];
        foreach ($headers as $name => $v) {
            $values = \is_array($v) ? array_values($v) : [$v];
            foreach ($values as $x) {
                if (!\is_string($x)) {
                    throw new \InvalidArgumentException(sprintf('jobs: header "%s": values must be strings', $name));
                }
            }
            $out[(string) $name] = ['value' => $values];
        }

        return $out;
    }

    private static function uuid4(): string
    {
        $b = random_bytes(16);
        $b[6] = \chr((\ord($b[6]) & 0x0F) | 0x40);
        $b[8] = \chr((\ord($b[8]) & 0x3F) | 0x80);

        return vsprintf('%s%s-%s-%s-%s-%s%s%s', str_split(bin2hex($b), 4));
    }
}
