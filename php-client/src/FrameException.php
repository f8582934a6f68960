<?php

declare(strict_types=1);

namespace Pipevisor;

/**
 * Thrown when bytes do not form a valid goridge v3 frame: wrong version,
 * header length outside 3..13 words, CRC mismatch, or a truncated buffer.
 */
class FrameException extends RelayException
{
}
