<?php

declare(strict_types=1);

namespace Pipevisor\Tests;

use PHPUnit\Framework\Assert;

/**
 * Access to the golden frames written by the Go frame package
 * (frame/testdata/*.bin, described by frame/testdata/vectors.json).
 */
final class Golden
{
    public const DIR = __DIR__ . '/../../frame/testdata';

    /**
     * @return array<string, array{name: string, file: string, direction: string, flags: int, options: list<int>, context: string, body: string, description: string}>
     */
    public static function vectors(): array
    {
        $json = @file_get_contents(self::DIR . '/vectors.json');
        Assert::assertIsString($json, 'frame/testdata/vectors.json is missing');
        $list = json_decode($json, true, 512, JSON_THROW_ON_ERROR);
        $out = [];
        foreach ($list as $v) {
            $out[$v['name']] = $v;
        }

        return $out;
    }

    public static function bytes(string $name): string
    {
        $v = self::vectors()[$name] ?? null;
        Assert::assertNotNull($v, "no golden vector named $name");
        $b = @file_get_contents(self::DIR . '/' . $v['file']);
        Assert::assertIsString($b, "golden file {$v['file']} is missing");

        return $b;
    }

    /** The body of a golden vector. */
    public static function body(string $name): string
    {
        return self::vectors()[$name]['body'];
    }
}
