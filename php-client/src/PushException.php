<?php

declare(strict_types=1);

namespace Pipevisor;

/**
 * Thrown by Jobs::push() and Jobs::pushBatch() when not every job was
 * confirmed by the broker. It sorts the job ids of the call into three
 * groups:
 *
 *   - confirmed: the broker confirmed the job; it is in the queue.
 *   - failed: the broker refused the job or it was never sent; it is not
 *     in the queue, and pushing it again is safe.
 *   - in doubt: the job was sent but its confirm was lost (the broker
 *     connection or channel closed, a confirm timeout, or the connection to
 *     the supervisor broke before its answer); it may be in the queue, and
 *     pushing it again may duplicate it.
 *
 * It is an RPCException: code that catches RPCException still catches it.
 * The message is the supervisor's (without its report), or the transport
 * failure's.
 */
final class PushException extends RPCException
{
    /** Starts the report the supervisor appends to a push error. */
    public const REPORT_MARKER = ' pipevisor-push-report=';

    /**
     * @param list<string> $confirmed
     * @param list<string> $failed
     * @param list<string> $inDoubt
     */
    public function __construct(
        string $message,
        string $method,
        bool $fromServer,
        private readonly array $confirmed,
        private readonly array $failed,
        private readonly array $inDoubt,
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, $method, $fromServer, $previous);
    }

    /**
     * The exception for the call of $method that pushed the jobs $ids (in
     * request order) and failed with $e: a server error with a report sorts
     * the ids by it; one without (an invalid job, an unknown pipeline) means
     * nothing was published; a transport failure leaves every job in doubt,
     * unless the connection could not even be opened ($sent false).
     *
     * @param list<string> $ids
     */
    public static function fromRPC(RPCException $e, string $method, array $ids, bool $sent = true): self
    {
        if (!$e->isServerError()) {
            return $sent
                ? new self($e->getMessage(), $method, false, [], [], $ids, $e)
                : new self($e->getMessage(), $method, false, [], $ids, [], $e);
        }
        $text = $e->getMessage();
        $at = strrpos($text, self::REPORT_MARKER);
        if ($at === false) {
            return new self($text, $method, true, [], $ids, [], $e);
        }
        $groups = self::decode(substr($text, $at + \strlen(self::REPORT_MARKER)), $ids);
        if ($groups === null) {
            // A report that does not fit the batch: trust none of it.
            return new self($text, $method, true, [], [], $ids, $e);
        }

        return new self(substr($text, 0, $at), $method, true, $groups[0], $groups[1], $groups[2], $e);
    }

    /**
     * Decodes the report's JSON ({"confirmed":[[first,last],...],"failed":...,
     * "in_doubt":...}, inclusive index ranges) into the three id lists, or
     * null when it does not cover every id exactly once.
     *
     * @param list<string> $ids
     * @return null|array{list<string>, list<string>, list<string>}
     */
    private static function decode(string $json, array $ids): ?array
    {
        $r = json_decode($json, true);
        if (!\is_array($r)) {
            return null;
        }
        $seen = [];
        $out = [];
        foreach (['confirmed', 'failed', 'in_doubt'] as $k) {
            $group = [];
            foreach ($r[$k] ?? [] as $range) {
                if (!\is_array($range) || \count($range) !== 2 || !\is_int($range[0]) || !\is_int($range[1])
                    || $range[0] < 0 || $range[1] < $range[0] || $range[1] >= \count($ids)) {
                    return null;
                }
                for ($i = $range[0]; $i <= $range[1]; $i++) {
                    if (isset($seen[$i])) {
                        return null;
                    }
                    $seen[$i] = true;
                    $group[] = $ids[$i];
                }
            }
            $out[] = $group;
        }

        return \count($seen) === \count($ids) ? $out : null;
    }

    /**
     * Ids of the jobs the broker confirmed.
     *
     * @return list<string>
     */
    public function getConfirmed(): array
    {
        return $this->confirmed;
    }

    /**
     * Ids of the jobs that are certainly not in the queue (safe to push again).
     *
     * @return list<string>
     */
    public function getFailed(): array
    {
        return $this->failed;
    }

    /**
     * Ids of the jobs that may be in the queue (pushing them again may
     * duplicate them).
     *
     * @return list<string>
     */
    public function getInDoubt(): array
    {
        return $this->inDoubt;
    }
}
