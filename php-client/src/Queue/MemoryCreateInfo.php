<?php

declare(strict_types=1);

namespace Pipevisor\Queue;

/** A memory pipeline (see CreateInfo). */
final class MemoryCreateInfo extends CreateInfo
{
    public const PREFETCH_DEFAULT_VALUE = 10;

    /** @param positive-int $prefetch most jobs the pipeline takes in at once */
    public function __construct(
        string $name,
        int $priority = self::PRIORITY_DEFAULT_VALUE,
        public readonly int $prefetch = self::PREFETCH_DEFAULT_VALUE,
    ) {
        parent::__construct('memory', $name, $priority);
    }

    public function toArray(): array
    {
        return parent::toArray() + ['prefetch' => $this->prefetch];
    }
}
