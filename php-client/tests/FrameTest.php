<?php

declare(strict_types=1);

namespace Pipevisor\Tests;

use PHPUnit\Framework\TestCase;
use Pipevisor\Frame;
use Pipevisor\FrameException;

final class FrameTest extends TestCase
{
    /** @return iterable<string, array{array<string, mixed>}> */
    public static function goldenVectors(): iterable
    {
        foreach (Golden::vectors() as $name => $v) {
            yield $name => [$v];
        }
    }

    /**
     * @dataProvider goldenVectors
     * @param array{name: string, file: string, flags: int, options: list<int>, context: string, body: string} $v
     */
    public function testDecodesGoldenFrame(array $v): void
    {
        $f = Frame::decode(Golden::bytes($v['name']));

        self::assertSame($v['flags'], $f->flags);
        self::assertSame($v['options'], $f->options);
        if ($f->options !== []) {
            self::assertSame($v['context'], substr($f->payload, 0, $f->options[0]));
            self::assertSame($v['body'], substr($f->payload, $f->options[0]));
        } else {
            self::assertSame('', $v['context']);
            self::assertSame($v['body'], $f->payload);
        }
    }

    /**
     * @dataProvider goldenVectors
     * @param array{name: string, file: string, flags: int, options: list<int>, context: string, body: string} $v
     */
    public function testEncodesGoldenFrameByteForByte(array $v): void
    {
        $bytes = Frame::encode($v['flags'], $v['options'], $v['context'] . $v['body']);

        self::assertSame(bin2hex(Golden::bytes($v['name'])), bin2hex($bytes));
    }

    public function testRoundTripsEveryOptionCountAndStreamByte(): void
    {
        for ($n = 0; $n <= Frame::MAX_OPTIONS; $n++) {
            $opts = $n === 0 ? [] : range(1, $n);
            $opts[] = 0xFFFFFFFF;
            if (\count($opts) > Frame::MAX_OPTIONS) {
                array_shift($opts);
            }
            $in = new Frame(Frame::CODEC_JSON | Frame::ERROR, $opts, str_repeat("\x00\xff", $n * 100), Frame::BYTE10_PONG);
            $out = Frame::decode($in->toBytes());

            self::assertEquals($in, $out, "with $n options");
        }
    }

    public function testRejectsACorruptedHeader(): void
    {
        $bytes = Golden::bytes('job');
        $bytes[3] = \chr(\ord($bytes[3]) ^ 0x01); // payload length changed, CRC now wrong

        $this->expectException(FrameException::class);
        $this->expectExceptionMessage('CRC mismatch');
        Frame::decode($bytes);
    }

    public function testRejectsTextThatIsNotAFrame(): void
    {
        $this->expectException(FrameException::class);
        $this->expectExceptionMessage('CRC mismatch');
        Frame::decode("Could not open input file: worker.php\n");
    }

    public function testRejectsAnotherVersion(): void
    {
        $head = \chr(0x23) . "\x00" . pack('V', 0);
        $bytes = $head . pack('V', crc32($head)) . "\x00\x00";

        $this->expectException(FrameException::class);
        $this->expectExceptionMessage('version 2');
        Frame::decode($bytes);
    }

    public function testRejectsAHeaderLengthAboveThirteenWords(): void
    {
        $head = \chr(0x1E) . "\x00" . pack('V', 0);
        $bytes = $head . pack('V', crc32($head)) . "\x00\x00" . str_repeat("\x00", 44);

        $this->expectException(FrameException::class);
        $this->expectExceptionMessage('header length 14');
        Frame::decode($bytes);
    }

    public function testRejectsATruncatedPayload(): void
    {
        $bytes = Golden::bytes('job');

        $this->expectException(FrameException::class);
        Frame::decode(substr($bytes, 0, -1));
    }

    public function testRefusesMoreThanTenOptions(): void
    {
        $this->expectException(FrameException::class);
        Frame::encode(0, range(1, 11), '');
    }

    public function testRefusesAnOptionOutsideUint32(): void
    {
        $this->expectException(FrameException::class);
        Frame::encode(0, [-1], '');
    }
}
