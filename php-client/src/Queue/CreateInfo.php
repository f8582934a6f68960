<?php

declare(strict_types=1);

namespace Pipevisor\Queue;

/**
 * What Jobs::create() / Jobs::declare() send to create a pipeline at run
 * time (jobs.Declare): the same keys, in the same order and encoding, as
 * RoadRunner's PHP SDK (spiral/roadrunner-jobs 4.x) sends for its
 * CreateInfo of the same name, so code written for it ports by changing
 * the namespace.
 */
abstract class CreateInfo
{
    public const PRIORITY_DEFAULT_VALUE = 10;

    /**
     * @param non-empty-string $name the pipeline name
     * @param positive-int $priority default priority of its jobs (lower is more urgent)
     */
    public function __construct(
        public readonly string $driver,
        public readonly string $name,
        public readonly int $priority = self::PRIORITY_DEFAULT_VALUE,
    ) {
        if ($name === '') {
            throw new \InvalidArgumentException('create info: the pipeline name is empty');
        }
        if ($priority < 1) {
            throw new \InvalidArgumentException(sprintf('create info: priority must be >= 1, got %d', $priority));
        }
    }

    /**
     * The jobs.Declare keys: strings, ints, bools and arrays (sent as JSON).
     *
     * @return array<string, scalar|array<mixed>>
     */
    public function toArray(): array
    {
        return ['name' => $this->name, 'driver' => $this->driver, 'priority' => $this->priority];
    }
}
