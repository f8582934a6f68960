<?php

declare(strict_types=1);

namespace Pipevisor;

/**
 * One goridge v3 frame: the unit of every exchange with the supervisor.
 *
 * Byte layout (little-endian):
 *
 *     0      version (high nibble, always 1) | HL (low nibble, header length in 32-bit words, 3..13)
 *     1      flags (CONTROL, ERROR, CODEC_*)
 *     2..5   payload length (uint32), options not included
 *     6..9   CRC-32 (IEEE, as PHP's crc32()) over bytes 0..5 only
 *     10     stream byte (BYTE10_*)
 *     11     reserved, 0
 *     12..   HL-3 options, uint32 each
 *     then   payload
 *
 * Exec frames carry one option, the context length: payload = context ‖ body.
 * RPC frames carry two, [sequence, method length]: payload = method ‖ body.
 * Control frames carry none; their payload is JSON ({"pid":N} or {"stop":true}).
 *
 * Instances are immutable values.
 */
final class Frame
{
    public const CONTROL = 0x01;
    public const CODEC_RAW = 0x04;
    public const CODEC_JSON = 0x08;
    public const CODEC_MSGPACK = 0x10;
    public const CODEC_GOB = 0x20;
    public const ERROR = 0x40;
    public const CODEC_PROTO = 0x80;

    public const BYTE10_STREAM = 0x01;
    public const BYTE10_STOP = 0x02;
    public const BYTE10_PING = 0x04;
    public const BYTE10_PONG = 0x08;

    /** Size of the fixed header, without options. */
    public const HEADER_SIZE = 12;
    /** At most this many options fit in a header. */
    public const MAX_OPTIONS = 10;
    /** The only frame version there is. */
    public const VERSION = 1;

    /**
     * @param int $flags bitmask of CONTROL, ERROR and CODEC_* constants
     * @param list<int> $options unsigned 32-bit values, at most MAX_OPTIONS
     * @param string $payload raw payload bytes
     * @param int $byte10 stream bits (BYTE10_*)
     */
    public function __construct(
        public readonly int $flags,
        public readonly array $options,
        public readonly string $payload,
        public readonly int $byte10 = 0,
    ) {
    }

    /**
     * Encodes a frame to its wire bytes. The CRC is computed last, over bytes
     * 0..5, as the Go side checks it.
     *
     * @param list<int> $options
     * @throws FrameException with more than MAX_OPTIONS options or an option outside uint32
     */
    public static function encode(int $flags, array $options, string $payload, int $byte10 = 0): string
    {
        $n = \count($options);
        if ($n > self::MAX_OPTIONS) {
            throw new FrameException(sprintf('frame: %d options, at most %d fit in a header', $n, self::MAX_OPTIONS));
        }
        $head = \chr((self::VERSION << 4) | (3 + $n)) . \chr($flags & 0xFF) . pack('V', \strlen($payload));
        $opts = '';
        if ($n > 0) {
            foreach ($options as $o) {
                if (!\is_int($o) || $o < 0 || $o > 0xFFFFFFFF) {
                    throw new FrameException('frame: option out of uint32 range: ' . var_export($o, true));
                }
            }
            $opts = pack('V*', ...$options);
        }

        return $head . pack('V', crc32($head)) . \chr($byte10 & 0xFF) . "\0" . $opts . $payload;
    }

    /** Wire bytes of this frame. */
    public function toBytes(): string
    {
        return self::encode($this->flags, $this->options, $this->payload, $this->byte10);
    }

    /**
     * Parses and validates the fixed 12-byte header.
     *
     * @return array{int, int, int, int} [flags, option bytes that follow, payload length, byte10]
     * @throws FrameException on a short header, a version other than 1, HL outside 3..13 or a CRC mismatch
     */
    public static function parseHeader(string $header): array
    {
        if (\strlen($header) < self::HEADER_SIZE) {
            throw new FrameException(sprintf('frame: header is %d bytes, need %d', \strlen($header), self::HEADER_SIZE));
        }
        /** @var array{b0:int, flags:int, len:int, crc:int, b10:int} $h */
        $h = unpack('Cb0/Cflags/Vlen/Vcrc/Cb10', $header);
        if (crc32(substr($header, 0, 6)) !== $h['crc']) {
            throw new FrameException(sprintf(
                'frame: CRC mismatch; the peer wrote something that is not a frame (header bytes %s)',
                json_encode(substr($header, 0, self::HEADER_SIZE), JSON_INVALID_UTF8_SUBSTITUTE),
            ));
        }
        $version = $h['b0'] >> 4;
        $hl = $h['b0'] & 0x0F;
        if ($version !== self::VERSION) {
            throw new FrameException(sprintf('frame: version %d, want %d', $version, self::VERSION));
        }
        if ($hl < 3 || $hl > 3 + self::MAX_OPTIONS) {
            throw new FrameException(sprintf('frame: header length %d words, want 3..13', $hl));
        }

        return [$h['flags'], ($hl - 3) * 4, $h['len'], $h['b10']];
    }

    /**
     * Builds a frame from a parsed header and the bytes that follow it
     * (options ‖ payload).
     *
     * @param array{int, int, int, int} $header as returned by parseHeader()
     * @throws FrameException when $rest has the wrong length
     */
    public static function fromParts(array $header, string $rest): self
    {
        [$flags, $optBytes, $len, $byte10] = $header;
        if (\strlen($rest) !== $optBytes + $len) {
            throw new FrameException(sprintf('frame: %d bytes after the header, want %d', \strlen($rest), $optBytes + $len));
        }
        $options = [];
        if ($optBytes > 0) {
            $options = array_values(unpack('V*', substr($rest, 0, $optBytes)));
            $rest = substr($rest, $optBytes);
        }

        return new self($flags, $options, $rest, $byte10);
    }

    /**
     * Decodes exactly one frame from a complete buffer.
     *
     * @throws FrameException on any invalid or truncated frame, or trailing bytes
     */
    public static function decode(string $bytes): self
    {
        return self::fromParts(self::parseHeader($bytes), substr($bytes, self::HEADER_SIZE));
    }
}
