<?php

declare(strict_types=1);

namespace Pipevisor;

/**
 * Thrown by Jobs when a call fails. For an error the supervisor reported
 * (an ERROR frame) the message is the server's text, unchanged; a transport
 * failure (cannot connect, connection lost, bad frame, unexpected reply)
 * wraps the cause as the previous exception.
 */
class RPCException extends \RuntimeException
{
    /**
     * @param string $method the RPC method that failed, e.g. "jobs.Push"
     * @param bool $fromServer true when the supervisor answered with an error
     */
    public function __construct(
        string $message,
        private readonly string $method = '',
        private readonly bool $fromServer = false,
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, 0, $previous);
    }

    /** The RPC method that failed, e.g. "jobs.Push". */
    public function getMethod(): string
    {
        return $this->method;
    }

    /** True when the supervisor itself answered with an error (ERROR frame). */
    public function isServerError(): bool
    {
        return $this->fromServer;
    }
}
