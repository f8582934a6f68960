<?php

declare(strict_types=1);

namespace Pipevisor\Tests;

use PHPUnit\Framework\TestCase;
use Pipevisor\RPC;

/**
 * A request over the supervisor's RPC frame limit is reported with the
 * limit (the supervisor's error reply, worded for the call).
 */
final class RPCFrameLimitTest extends TestCase
{
    private const REFUSED = 'rpc: request of 64.0 MiB exceeds the RPC frame limit of 64 MiB (67108912 > 67108864 bytes)';

    public function testPushNamesTheLimit(): void
    {
        foreach (['jobs.Push', 'jobs.PushBatch'] as $method) {
            self::assertSame(
                'push of 64.0 MiB exceeds the RPC frame limit of 64 MiB (67108912 > 67108864 bytes)',
                RPC::serverMessage($method, self::REFUSED),
            );
        }
        self::assertSame(
            'push of 3 MiB exceeds the RPC frame limit of 2 MiB (3145728 > 2097152 bytes)',
            RPC::serverMessage('jobs.Push', 'rpc: request of 3 MiB exceeds the RPC frame limit of 2 MiB (3145728 > 2097152 bytes)'),
        );
    }

    public function testOtherMethodsAndMessages(): void
    {
        self::assertSame(
            'request of 64.0 MiB exceeds the RPC frame limit of 64 MiB (67108912 > 67108864 bytes)',
            RPC::serverMessage('jobs.Declare', self::REFUSED),
        );
        self::assertSame('pipeline "x" does not exist', RPC::serverMessage('jobs.Push', 'pipeline "x" does not exist'));
    }
}
