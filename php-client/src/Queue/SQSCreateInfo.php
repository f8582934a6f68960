<?php

declare(strict_types=1);

namespace Pipevisor\Queue;

/**
 * An sqs pipeline (see CreateInfo). attributes (queue attributes such as
 * MessageRetentionPeriod or RedrivePolicy, which may be an array) and tags
 * are used when the supervisor creates the queue.
 */
final class SQSCreateInfo extends CreateInfo
{
    public const PREFETCH_DEFAULT_VALUE = 10;
    public const QUEUE_DEFAULT_VALUE = 'default';

    /**
     * @param int<0, max> $visibilityTimeout seconds, 0 = the queue's
     * @param int<0, 20> $waitTimeSeconds long-polling seconds
     * @param array<string, mixed> $attributes
     * @param array<string, string> $tags
     * @param null|non-empty-string $messageGroupId FIFO group of pushed jobs without a key
     */
    public function __construct(
        string $name,
        int $priority = self::PRIORITY_DEFAULT_VALUE,
        public readonly int $prefetch = self::PREFETCH_DEFAULT_VALUE,
        public readonly int $visibilityTimeout = 0,
        public readonly int $waitTimeSeconds = 0,
        public readonly string $queue = self::QUEUE_DEFAULT_VALUE,
        public readonly array $attributes = [],
        public readonly array $tags = [],
        public readonly ?string $messageGroupId = null,
        public readonly bool $skipQueueDeclaration = false,
    ) {
        parent::__construct('sqs', $name, $priority);
    }

    public function toArray(): array
    {
        $out = parent::toArray() + [
            'prefetch' => $this->prefetch,
            'visibility_timeout' => $this->visibilityTimeout,
            'wait_time' => $this->waitTimeSeconds,
            'queue' => $this->queue,
            'skip_queue_declaration' => $this->skipQueueDeclaration,
        ];
        if ($this->attributes !== []) {
            $out['attributes'] = $this->attributes;
        }
        if ($this->tags !== []) {
            $out['tags'] = $this->tags;
        }
        if ($this->messageGroupId !== null && $this->messageGroupId !== '') {
            $out['message_group_id'] = $this->messageGroupId;
        }

        return $out;
    }
}
