<?php

declare(strict_types=1);

namespace Pipevisor;

/**
 * A goridge RPC client with the JSON codec: the transport under Jobs.
 *
 * Each call writes one frame (flags CODEC_JSON, options [seq, len(method)],
 * payload method ‖ JSON body) and reads the reply frame with the same seq.
 * A reply with the ERROR flag becomes an RPCException carrying the server's
 * message. The connection is opened on the first call (or by connect()) and
 * reopened by the next call after a transport failure. Calls are
 * synchronous; one RPC object serves one caller at a time.
 */
final class RPC
{
    /** rpc.listen of the default .rr.yaml. */
    public const DEFAULT_ADDRESS = 'tcp://127.0.0.1:6001';

    private ?Relay $relay = null;
    private int $seq = 0;

    /**
     * @param string $address tcp://host:port (tcp://:port for 127.0.0.1) or unix:///path
     * @param float $timeout seconds for connecting and for each reply
     * @throws \InvalidArgumentException when the address is not tcp:// or unix://
     */
    public function __construct(private readonly string $address, private readonly float $timeout = 30.0)
    {
        if (!str_starts_with($address, 'tcp://') && !str_starts_with($address, 'unix://')) {
            throw new \InvalidArgumentException(sprintf('rpc: address "%s" must be tcp://host:port or unix:///path', $address));
        }
        if ($timeout <= 0) {
            throw new \InvalidArgumentException('rpc: timeout must be positive');
        }
    }

    /**
     * The client for the RPC address in the RR_RPC environment variable
     * (set by the supervisor for its workers), or DEFAULT_ADDRESS.
     */
    public static function fromEnv(float $timeout = 30.0): self
    {
        $addr = getenv('RR_RPC');

        return new self(\is_string($addr) && $addr !== '' ? $addr : self::DEFAULT_ADDRESS, $timeout);
    }

    /** The address this client connects to. */
    public function getAddress(): string
    {
        return $this->address;
    }

    /**
     * Opens the connection now instead of on the first call. Does nothing
     * when it is already open.
     *
     * @throws RPCException when nothing listens at the address
     */
    public function connect(): void
    {
        if ($this->relay !== null) {
            return;
        }
        $errno = 0;
        $errstr = '';
        // An empty host (tcp://:6001, a listen address the supervisor passes
        // on in RR_RPC unchanged) means this machine.
        $address = str_starts_with($this->address, 'tcp://:') ? 'tcp://127.0.0.1:' . substr($this->address, 7) : $this->address;
        $sock = @stream_socket_client($address, $errno, $errstr, $this->timeout);
        if ($sock === false) {
            throw new RPCException(sprintf('rpc: cannot connect to %s (is the supervisor running?): %s', $this->address, $errstr));
        }
        $sec = (int) $this->timeout;
        stream_set_timeout($sock, $sec, (int) (($this->timeout - $sec) * 1e6));
        $this->relay = new Relay($sock, $sock);
    }

    /** Closes the connection; the next call opens a new one. */
    public function close(): void
    {
        $this->relay?->close();
        $this->relay = null;
    }

    /**
     * The text of an error reply as the client reports it. A request over
     * the supervisor's RPC frame limit reads "push of 64.0 MiB exceeds the
     * RPC frame limit of 64 MiB (67108912 > 67108864 bytes)" for jobs.Push
     * and jobs.PushBatch ("request of ..." for other methods); any other
     * text is returned unchanged.
     */
    public static function serverMessage(string $method, string $text): string
    {
        if (preg_match('/ exceeds the RPC frame limit of .*\((\d+) > (\d+) bytes\)$/', $text, $m) !== 1) {
            return $text;
        }
        $size = (int) $m[1];
        $limit = (int) $m[2];
        $what = \in_array($method, ['jobs.Push', 'jobs.PushBatch'], true) ? 'push' : 'request';

        return sprintf('%s of %s exceeds the RPC frame limit of %s (%d > %d bytes)', $what, self::mib($size), self::mib($limit), $size, $limit);
    }

    /** $n bytes in MiB as the supervisor writes them: "64 MiB", "64.1 MiB". */
    private static function mib(int $n): string
    {
        return $n % (1 << 20) === 0 ? sprintf('%d MiB', $n >> 20) : sprintf('%.1f MiB', $n / (1 << 20));
    }

    /**
     * Calls a method with a JSON body and returns the decoded JSON reply.
     *
     * @param string $method e.g. "jobs.Push"
     * @param array<mixed>|\stdClass $params encoded as the JSON body ([] is sent as {})
     * @return array<mixed> the decoded reply body
     * @throws RPCException on a server error (isServerError() true) or a transport failure
     * @throws \InvalidArgumentException when $params cannot be encoded as JSON
     */
    public function call(string $method, array|\stdClass $params): array
    {
        try {
            $body = json_encode($params === [] ? new \stdClass() : $params, \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE | \JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new \InvalidArgumentException(sprintf('rpc: %s: cannot encode the request as JSON: %s', $method, $e->getMessage()), 0, $e);
        }
        $this->connect();
        $seq = $this->seq = ($this->seq % 0xFFFFFFFF) + 1;
        try {
            $this->relay->send(Frame::encode(Frame::CODEC_JSON, [$seq, \strlen($method)], $method . $body));
            $reply = $this->relay->receive();
        } catch (RelayException $e) {
            $this->close();
            throw new RPCException(sprintf('rpc: %s: %s', $method, $e->getMessage()), $method, false, $e);
        }
        if ($reply === null) {
            $this->close();
            throw new RPCException(sprintf('rpc: %s: the supervisor closed the connection', $method), $method);
        }
        if (\count($reply->options) !== 2 || $reply->options[0] !== $seq || $reply->options[1] > \strlen($reply->payload)) {
            $this->close();
            throw new RPCException(sprintf('rpc: %s: reply does not answer request %d (options %s)', $method, $seq, json_encode($reply->options)), $method);
        }
        $text = substr($reply->payload, $reply->options[1]);
        if (($reply->flags & Frame::ERROR) !== 0) {
            throw new RPCException(self::serverMessage($method, $text), $method, true);
        }
        $out = json_decode($text, true);
        if (!\is_array($out)) {
            throw new RPCException(sprintf('rpc: %s: reply is not a JSON object: %s', $method, substr($text, 0, 200)), $method);
        }

        return $out;
    }
}
