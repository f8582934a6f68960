<?php

declare(strict_types=1);

namespace Pipevisor\Queue;

/**
 * An amqp (RabbitMQ) pipeline (see CreateInfo). The arguments are the amqp
 * pipeline keys of .rr.yaml; consumeAll is sent for compatibility and has
 * no effect (every message of the queue is consumed, as in RoadRunner
 * since 2024.3). exchangeType is direct, fanout, topic or headers ("topics",
 * the RoadRunner SDK's spelling, is read as topic).
 */
final class AMQPCreateInfo extends CreateInfo
{
    public const PREFETCH_DEFAULT_VALUE = 100;
    public const QUEUE_DEFAULT_VALUE = 'default';
    public const EXCHANGE_DEFAULT_VALUE = 'amqp.default';
    public const EXCHANGE_TYPE_DEFAULT_VALUE = 'direct';
    public const REDIAL_TIMEOUT_DEFAULT_VALUE = 60;

    /**
     * @param array<string, scalar> $queueHeaders queue-declare arguments (x-max-priority, x-queue-type, ...)
     * @param positive-int $redialTimeout seconds
     * @param null|non-empty-string $consumerId consumer tag (default: generated)
     */
    public function __construct(
        string $name,
        int $priority = self::PRIORITY_DEFAULT_VALUE,
        public readonly int $prefetch = self::PREFETCH_DEFAULT_VALUE,
        public readonly string $queue = self::QUEUE_DEFAULT_VALUE,
        public readonly string $exchange = self::EXCHANGE_DEFAULT_VALUE,
        public readonly string $exchangeType = self::EXCHANGE_TYPE_DEFAULT_VALUE,
        public readonly string $routingKey = '',
        public readonly bool $exclusive = false,
        public readonly bool $multipleAck = false,
        public readonly bool $requeueOnFail = false,
        public readonly bool $durable = false,
        public readonly bool $exchangeDurable = false,
        public readonly bool $consumeAll = false,
        public readonly array $queueHeaders = [],
        public readonly bool $deleteQueueOnStop = false,
        public readonly int $redialTimeout = self::REDIAL_TIMEOUT_DEFAULT_VALUE,
        public readonly bool $exchangeAutoDelete = false,
        public readonly bool $queueAutoDelete = false,
        public readonly ?string $consumerId = null,
    ) {
        parent::__construct('amqp', $name, $priority);
    }

    public function toArray(): array
    {
        $out = parent::toArray() + [
            'prefetch' => $this->prefetch,
            'queue' => $this->queue,
            'queue_auto_delete' => $this->queueAutoDelete,
            'exchange' => $this->exchange,
            'exchange_durable' => $this->exchangeDurable,
            'exchange_type' => $this->exchangeType,
            'exchange_auto_delete' => $this->exchangeAutoDelete,
            'routing_key' => $this->routingKey,
            'exclusive' => $this->exclusive,
            'multiple_ack' => $this->multipleAck,
            'requeue_on_fail' => $this->requeueOnFail,
            'durable' => $this->durable,
            'consume_all' => $this->consumeAll,
            'queue_headers' => $this->queueHeaders,
            'delete_queue_on_stop' => $this->deleteQueueOnStop,
            'redial_timeout' => $this->redialTimeout,
        ];
        if ($this->consumerId !== null && $this->consumerId !== '') {
            $out['consumer_id'] = $this->consumerId;
        }

        return $out;
    }
}
