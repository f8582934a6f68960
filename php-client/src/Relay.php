<?php

declare(strict_types=1);

namespace Pipevisor;

/**
 * A bidirectional frame stream to the supervisor: STDIN/STDOUT pipes (the
 * default), or a socket the worker dials (tcp://host:port, unix:///path).
 *
 * The pipes relay never reads past the frame receive() returns. Its input
 * stream's read buffer is off (stream_set_read_buffer($in, 0)), so each
 * fread() is one read(2) of at most the bytes the frame still lacks: one of
 * the 12-byte header, one of the options and payload, and more only when
 * the pipe hands a frame over in pieces. Frames the supervisor wrote ahead
 * of their turn (jobs.pool.pipelining) stay in the pipe until receive() is
 * called for them: when a worker dies or exits without answering, the
 * supervisor asks the kernel how many bytes of its stdin are unread
 * (FIONREAD) to tell which queued jobs it never started, and runs those
 * elsewhere without spending an attempt. A process that inherits the pipe
 * after receive() returned (proc_open, exec) finds the next frame whole.
 * The price is one read(2) more per frame than with PHP's 8 KiB buffer,
 * which usually served the header and the rest from a single read(2).
 *
 * Socket relays keep the buffer, and may read ahead: writing ahead and the
 * FIONREAD count concern the worker's stdin pipe only; a socket relay
 * carries one job at a time (the next is written after the reply to the
 * one before) and nothing asks what a socket holds unread, so no one relies
 * on the bytes staying there, and the buffer saves that read(2). A relay
 * built with the constructor (RPC's socket, tests) reads $in as it is
 * given; turn its read buffer off first for the same guarantee.
 *
 * Writing a frame costs one fwrite(). The relay is not safe for use by two
 * parties at once; a worker process owns exactly one.
 */
final class Relay
{
    /** @var resource */
    private $in;
    /** @var resource */
    private $out;

    /**
     * @param resource $in stream frames are read from
     * @param resource $out stream frames are written to (may be the same as $in)
     */
    public function __construct($in, $out)
    {
        if (!\is_resource($in) || !\is_resource($out)) {
            throw new \InvalidArgumentException('relay: $in and $out must be open streams');
        }
        $this->in = $in;
        $this->out = $out;
    }

    /**
     * Opens the relay named by an address as found in RR_RELAY: "pipes" (or
     * an empty string) for STDIN/STDOUT, "tcp://host:port" or "unix:///path"
     * for a socket the supervisor listens on.
     *
     * With $moveOffStdout (pipes only, Linux: it needs /proc/self/fd), the
     * frames are written to a duplicate of the original stdout and fd 1 is
     * pointed at stderr, so that child processes (proc_open without
     * descriptor 1, popen, exec, system) and output that bypasses PHP's
     * output buffers write to stderr, not into the frames. STDOUT is closed
     * then: fwrite(STDOUT, ...) fails instead of corrupting the stream.
     *
     * With $moveOffStdin (pipes only, Linux), the frames are read from a
     * duplicate of the original stdin and fd 0 is pointed at /dev/null, so
     * that user code reading STDIN or php://stdin, and child processes that
     * inherit fd 0 (proc_open without descriptor 0, popen, exec, system,
     * shell_exec), read end of file instead of the supervisor's frames.
     * Where the FFI extension may be used (the CLI, unless ffi.enable=0),
     * /dev/null is dup2(2)ed onto fd 0 and STDIN stays open (reading it gives
     * EOF); otherwise STDIN is closed (reading it fails) and /dev/null is
     * opened as fd 0.
     *
     * Where FFI may be used, both duplicates are close-on-exec (FD_CLOEXEC),
     * so child processes do not inherit the supervisor's pipes: a child left
     * running after its job (`cmd &`, a daemon) cannot read or write frames,
     * and the supervisor sees the worker's stdout end when the worker exits.
     * Without FFI children inherit the duplicates.
     *
     * @throws RelayException when the address is unknown or the socket cannot be opened
     */
    public static function create(string $address, bool $moveOffStdout = false, bool $moveOffStdin = false): self
    {
        if ($address === '' || $address === 'pipes' || $address === 'pipe') {
            $in = ($moveOffStdin ? self::moveOffStdin() : null)
                ?? (\defined('STDIN') ? \STDIN : fopen('php://stdin', 'rb'));
            $out = ($moveOffStdout ? self::moveOffStdout() : null)
                ?? (\defined('STDOUT') ? \STDOUT : fopen('php://stdout', 'wb'));
            if ($in === false || $out === false) {
                throw new RelayException('relay: cannot open STDIN/STDOUT');
            }
            // Never read past a frame: frames queued behind it must stay in
            // the pipe (see the class comment). Bytes already buffered (user
            // code read STDIN before) are still served first.
            stream_set_read_buffer($in, 0);

            return new self($in, $out);
        }
        if (!str_starts_with($address, 'tcp://') && !str_starts_with($address, 'unix://')) {
            throw new RelayException(sprintf('relay: unknown relay address "%s" (want pipes, tcp://host:port or unix:///path)', $address));
        }
        $errno = 0;
        $errstr = '';
        $sock = @stream_socket_client($address, $errno, $errstr, 10.0);
        if ($sock === false) {
            throw new RelayException(sprintf('relay: connect %s: %s (%d)', $address, $errstr, $errno));
        }
        // A worker may idle for a long time between jobs: no read timeout.
        stream_set_timeout($sock, 365 * 86400);

        return new self($sock, $sock);
    }

    /**
     * Reads the next frame. Blocks until one arrives; a frame that arrives
     * in pieces is read whole. On the pipes relay nothing past the frame is
     * read (see the class comment).
     *
     * @return null|Frame null when the stream ended cleanly before a frame
     *         started (the supervisor closed it or went away)
     * @throws FrameException when the bytes are not a valid frame
     * @throws RelayException when the stream ends in the middle of a frame,
     *         or a read timeout set on the stream passes
     */
    public function receive(): ?Frame
    {
        $header = $this->read(Frame::HEADER_SIZE, true);
        if ($header === null) {
            return null;
        }
        $parsed = Frame::parseHeader($header);
        $rest = $parsed[1] + $parsed[2];

        return Frame::fromParts($parsed, $rest > 0 ? $this->read($rest, false) : '');
    }

    /**
     * Writes encoded frame bytes (see Frame::encode()) with one fwrite() in
     * the common case; a short write is completed.
     *
     * @throws RelayException when the stream is closed or the write fails
     */
    public function send(string $bytes): void
    {
        $n = @fwrite($this->out, $bytes);
        if ($n === \strlen($bytes)) {
            return;
        }
        $done = $n === false ? 0 : $n;
        while ($done < \strlen($bytes)) {
            $n = @fwrite($this->out, substr($bytes, $done));
            if ($n === false || $n === 0) {
                throw new RelayException(sprintf('relay: write failed after %d of %d bytes', $done, \strlen($bytes)));
            }
            $done += $n;
        }
    }

    /** Closes both streams. Safe to call more than once. */
    public function close(): void
    {
        if (\is_resource($this->in)) {
            fclose($this->in);
        }
        if ($this->out !== $this->in && \is_resource($this->out)) {
            fclose($this->out);
        }
    }

    /** @var list<resource> streams on fd 0 or 1 after moveOffStdin()/moveOffStdout(), kept open */
    private static array $kept = [];

    /**
     * Opens a duplicate of fd 1 for the frames, then closes fd 1 and reopens
     * it on stderr (a new fd takes the lowest free number).
     *
     * @return null|resource the duplicate; null, with nothing changed, when
     *         /proc/self/fd cannot tell whether a duplicate was opened
     */
    private static function moveOffStdout()
    {
        [$out, $onFd1] = self::duplicate(1, 'wb') ?? [null, null];
        if ($out === null) {
            return null;
        }
        self::reopen(1, $onFd1, 'php://stderr', 'wb');

        return $out;
    }

    /**
     * Opens a duplicate of fd 0 for the frames, then points fd 0 at
     * /dev/null: with dup2(2) through FFI where it may be used (STDIN stays
     * open and reads EOF), else by closing STDIN and opening /dev/null (a
     * new fd takes the lowest free number).
     *
     * @return null|resource the duplicate; null, with nothing changed, when
     *         /proc/self/fd cannot tell whether a duplicate was opened
     */
    private static function moveOffStdin()
    {
        [$in, $onFd0] = self::duplicate(0, 'rb') ?? [null, null];
        if ($in === null) {
            return null;
        }
        if (self::dup2DevNull(0)) {
            if ($onFd0 !== null) {
                self::$kept[] = $onFd0;
            }

            return $in;
        }
        self::reopen(0, $onFd0, '/dev/null', 'rb');

        return $in;
    }

    /**
     * Closes fd 0 or 1 (the stream $onFd, else the STDIN or STDOUT constant)
     * and, when that freed it, opens $path there (a new fd takes the lowest
     * free number) and keeps it open.
     *
     * @param null|resource $onFd the stream on the fd that duplicate() opened
     */
    private static function reopen(int $fd, $onFd, string $path, string $mode): void
    {
        $constant = $fd === 0 ? 'STDIN' : 'STDOUT';
        if ($onFd !== null) {
            fclose($onFd);
        } elseif (\defined($constant)) {
            fclose(\constant($constant));
        }
        if (@readlink("/proc/self/fd/$fd") === false && ($s = fopen($path, $mode)) !== false) {
            self::$kept[] = $s;
        }
    }

    /**
     * Opens a duplicate of fd 0 or 1 through php://stdin or php://stdout.
     * In PHP CLI the first such open is the fd itself (the STDIN and STDOUT
     * constants take it when they exist) and later ones are dup(2)s; which
     * one came back is told by the fds in /proc/self/fd that link to the
     * same file. The duplicate is marked close-on-exec where FFI may be used
     * (see closeOnExec()).
     *
     * @return null|array{resource, null|resource} the duplicate, and the
     *         stream this call opened on the fd itself (null when none);
     *         null when /proc/self/fd cannot tell or no duplicate opened
     */
    private static function duplicate(int $fd, string $mode): ?array
    {
        $target = @readlink("/proc/self/fd/$fd");
        if ($target === false) {
            return null;
        }
        $url = $fd === 0 ? 'php://stdin' : 'php://stdout';
        $before = self::fdsLinkingTo($target);
        $dup = @fopen($url, $mode);
        if ($dup === false) {
            return null;
        }
        $added = array_diff(self::fdsLinkingTo($target), $before);
        if ($added !== []) {
            self::closeOnExec($added);

            return [$dup, null];
        }
        // $dup is the fd itself: keep it open whatever happens next.
        self::$kept[] = $onFd = $dup;
        $dup = @fopen($url, $mode);
        if ($dup === false) {
            return null;
        }
        $added = array_diff(self::fdsLinkingTo($target), $before);
        if ($added === []) {
            return null;
        }
        self::closeOnExec($added);
        array_pop(self::$kept);

        return [$dup, $onFd];
    }

    /**
     * Sets FD_CLOEXEC on the duplicates with fcntl(2) through FFI, so that
     * child processes (proc_open, exec, shell_exec, popen, pcntl_exec...)
     * do not inherit the supervisor's pipes: a child that outlives its job
     * would otherwise keep them open (the supervisor would not see the
     * worker's stdout end when the worker exits) and could read or write
     * frames. Where FFI may not be used nothing changes: the duplicates stay
     * inheritable.
     *
     * @param array<int> $fds
     */
    private static function closeOnExec(array $fds): void
    {
        $libc = self::libc();
        if ($libc === null) {
            return;
        }
        try {
            foreach ($fds as $fd) {
                $flags = $libc->fcntl($fd, 1 /* F_GETFD */);
                if ($flags >= 0) {
                    $libc->fcntl($fd, 2 /* F_SETFD */, $flags | 1 /* FD_CLOEXEC */);
                }
            }
        } catch (\Throwable) {
            // Left inheritable, as without FFI.
        }
    }

    /**
     * Points $fd at /dev/null with open(2) and dup2(2) called through FFI.
     *
     * @return bool false, with nothing changed, when FFI is not loaded, may
     *         not be used here (ffi.enable) or a call failed
     */
    private static function dup2DevNull(int $fd): bool
    {
        $libc = self::libc();
        if ($libc === null) {
            return false;
        }
        try {
            $null = $libc->open('/dev/null', 0 /* O_RDONLY */);
            if ($null < 0) {
                return false;
            }
            $ok = $null === $fd || $libc->dup2($null, $fd) === $fd;
            if ($null !== $fd) {
                $libc->close($null);
            }

            return $ok;
        } catch (\Throwable) {
            return false;
        }
    }

    /**
     * The few libc calls the pipes relay makes through FFI.
     *
     * @return null|\FFI null when FFI is not loaded or may not be used here
     *         (ffi.enable=0, or preload outside the CLI)
     */
    private static function libc(): ?\FFI
    {
        if (!\extension_loaded('FFI')) {
            return null;
        }
        try {
            return \FFI::cdef('int open(const char *path, int flags, ...); int dup2(int oldfd, int newfd); int close(int fd); int fcntl(int fd, int cmd, ...);');
        } catch (\Throwable) {
            return null;
        }
    }

    /** @return list<int> the fds in /proc/self/fd that link to $target */
    private static function fdsLinkingTo(string $target): array
    {
        $fds = [];
        foreach (scandir('/proc/self/fd') ?: [] as $fd) {
            if ($fd !== '.' && $fd !== '..' && @readlink("/proc/self/fd/$fd") === $target) {
                $fds[] = (int) $fd;
            }
        }

        return $fds;
    }

    /**
     * Reads exactly $n bytes, looping over short reads (an unbuffered pipe
     * returns what it holds, up to the bytes asked for).
     *
     * @return null|string null only when $atBoundary and nothing was read before the end of stream
     */
    private function read(int $n, bool $atBoundary): ?string
    {
        $buf = '';
        do {
            $chunk = @fread($this->in, $n - \strlen($buf));
            if ($chunk !== false && $chunk !== '') {
                $buf .= $chunk;
                continue;
            }
            // Nothing read: a socket read timeout (stream_set_timeout) is an
            // error, end of stream or a read error ends the frame; otherwise
            // a signal interrupted the read and it is retried.
            if (\is_resource($this->in) && stream_get_meta_data($this->in)['timed_out']) {
                throw new RelayException(sprintf('relay: read timed out after %d of %d bytes', \strlen($buf), $n));
            }
            if ($chunk === false || !\is_resource($this->in) || feof($this->in)) {
                if ($atBoundary && $buf === '') {
                    return null;
                }
                throw new RelayException(sprintf('relay: stream ended after %d of %d bytes of a frame', \strlen($buf), $n));
            }
        } while (\strlen($buf) < $n);

        return $buf;
    }
}
