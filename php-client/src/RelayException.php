<?php

declare(strict_types=1);

namespace Pipevisor;

/**
 * Thrown when the relay to the supervisor fails: it cannot be opened, a read
 * or write fails, or the stream ends in the middle of a frame.
 *
 * A stream that ends cleanly between two frames is not an error: the
 * consumer then stops (Consumer::waitTask() returns null).
 */
class RelayException extends \RuntimeException
{
}
