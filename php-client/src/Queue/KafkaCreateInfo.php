<?php

declare(strict_types=1);

namespace Pipevisor\Queue;

/**
 * A kafka pipeline (see CreateInfo). The options are the kafka pipeline
 * keys of .rr.yaml as arrays, sent as JSON objects:
 *
 *     new KafkaCreateInfo('events',
 *         producerOptions: ['required_acks' => 'AllISRAck', 'request_timeout' => '10s'],
 *         consumerOptions: ['topics' => ['events'], 'consumer_offset' => ['type' => 'AtStart']],
 *         groupOptions: ['group_id' => 'workers'],
 *     );
 *
 * Without groupOptions the partitions are read without a consumer group.
 */
final class KafkaCreateInfo extends CreateInfo
{
    /**
     * @param null|array<string, mixed> $producerOptions
     * @param null|array<string, mixed> $consumerOptions
     * @param null|array<string, mixed> $groupOptions
     */
    public function __construct(
        string $name,
        int $priority = self::PRIORITY_DEFAULT_VALUE,
        public readonly bool $autoCreateTopicsEnable = false,
        public readonly ?array $producerOptions = null,
        public readonly ?array $consumerOptions = null,
        public readonly ?array $groupOptions = null,
    ) {
        parent::__construct('kafka', $name, $priority);
    }

    public function toArray(): array
    {
        $out = parent::toArray() + ['auto_create_topics_enable' => $this->autoCreateTopicsEnable];
        foreach (['producer_options' => $this->producerOptions, 'consumer_options' => $this->consumerOptions,
            'group_options' => $this->groupOptions] as $k => $v) {
            if ($v !== null) {
                $out[$k] = $v;
            }
        }

        return $out;
    }
}
