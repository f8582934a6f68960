<?php

declare(strict_types=1);

namespace Pipevisor;

/**
 * The worker side: receives jobs from the supervisor and sends the replies.
 *
 *     require_once __DIR__ . '/vendor/autoload.php'; // or php-client/autoload.php
 *
 *     $consumer = new Pipevisor\Consumer();
 *     while ($task = $consumer->waitTask()) {
 *         try {
 *             handle($task->getName(), $task->getPayload());
 *             $task->ack();
 *         } catch (\Throwable $e) {
 *             $task->nack($e, redelivery: true);
 *         }
 *     }
 *
 * The loop ends (waitTask() returns null) when the supervisor asks the
 * worker to stop, or when its end of the relay closes (the supervisor went
 * away): the script then exits normally.
 *
 * Output safety: STDOUT is the protocol channel, so by default the
 * constructor redirects PHP's output (echo, print, var_dump, printf,
 * displayed errors and warnings) to STDERR with an output buffer, and sets
 * display_errors to stderr. The supervisor logs what a worker writes to
 * STDERR. With the default pipes relay (on Linux) it also moves the frames
 * to a duplicate of stdout and points fd 1 at stderr, so child processes
 * (proc_open without descriptor 1, popen, exec, system) and output printed
 * after user code removed the buffer go to STDERR too; STDOUT is closed
 * then, and php://stdout opened later is stderr. Output printed before the
 * Consumer is constructed is not redirected, so create it first.
 *
 * Input safety: likewise, with the default pipes relay (on Linux) the frames
 * are read from a duplicate of stdin and fd 0 is pointed at /dev/null, so
 * user code and child processes reading STDIN, php://stdin or an inherited
 * fd 0 read end of file instead of eating the supervisor's frames. STDIN
 * stays open where the FFI extension may be used (the CLI default), and is
 * closed otherwise. Pass a relay (new Consumer(Relay::create('pipes'))) to
 * keep fd 0 as it is.
 *
 * One Consumer per process. Not reentrant.
 */
final class Consumer
{
    private readonly Relay $relay;
    /** Number of the job currently handed out; a reply for another one is dropped. */
    private int $seq = 0;
    private bool $replied = true;
    private ?Task $current = null;
    private bool $stopped = false;
    private readonly string $ackFrame;

    /** Context of the exec reply asking to retire the worker (with an empty body). */
    private const STOP_CONTEXT = '{"stop":true}';

    /**
     * @param null|Relay $relay the relay to the supervisor; by default the one
     *        named by RR_RELAY ("pipes" when unset: STDIN/STDOUT)
     * @param bool $redirectOutput redirect PHP output to STDERR (see the class doc)
     * @throws RelayException when the relay cannot be opened
     */
    public function __construct(?Relay $relay = null, bool $redirectOutput = true)
    {
        if ($relay === null) {
            $addr = getenv('RR_RELAY');
            $relay = Relay::create(\is_string($addr) ? $addr : 'pipes', moveOffStdout: $redirectOutput, moveOffStdin: true);
        }
        $this->relay = $relay;
        $this->ackFrame = Frame::encode(0, [0], Task::ACK_BODY);
        if ($redirectOutput) {
            self::redirectOutput();
        }
    }

    /**
     * Waits for the next job and returns it; answers the supervisor's pid
     * handshake on the way.
     *
     * If the previous task was left without ack()/nack()/requeue(), it is
     * first failed with an error reply: the supervisor retries it with
     * backoff (counting an attempt), so a forgotten reply never acks a job
     * silently. That task then reports the error reply (isCompleted() and
     * isFails() true, getReplyType() Task::REPLY_ERROR), and a reply made
     * on it afterwards is ignored.
     *
     * @return null|Task null when the supervisor asked the worker to stop or
     *         closed the relay; every later call returns null too
     * @throws FrameException when the supervisor's bytes are not valid frames
     * @throws RelayException when the relay fails or ends mid-frame
     */
    public function waitTask(): ?Task
    {
        if (!$this->replied && $this->current !== null) {
            // Through the task, so it reports the ERROR frame it got
            // (completed, failed) and a later reply on it is ignored.
            $this->current->error(sprintf(
                'worker returned without ack, nack or requeue for job %s (%s)',
                $this->current->getId(),
                $this->current->getName(),
            ));
            $this->replied = true;
        }
        $this->current = null;
        while (!$this->stopped) {
            $frame = $this->relay->receive();
            if ($frame === null) {
                $this->stopped = true;
                break;
            }
            if (($frame->flags & Frame::CONTROL) !== 0) {
                $this->control($frame->payload);
                continue;
            }
            if (($frame->byte10 & (Frame::BYTE10_PONG | Frame::BYTE10_PING)) !== 0 && $frame->payload === '') {
                continue;
            }
            if ($frame->options === []) {
                throw new FrameException('consumer: job frame without the context length option');
            }
            $ctxLen = $frame->options[0];
            $context = json_decode(substr($frame->payload, 0, $ctxLen), true);
            if (!\is_array($context)) {
                $this->relay->send(Frame::encode(Frame::ERROR, [], 'worker: job context is not a JSON object: ' . json_last_error_msg()));
                continue;
            }

            return $this->current = new Task($context, (string) substr($frame->payload, $ctxLen), $this->replier());
        }

        return null;
    }

    /**
     * Whether the supervisor asked this worker to stop or the relay closed.
     */
    public function isStopped(): bool
    {
        return $this->stopped;
    }

    /** A reply function bound to the job being handed out now. */
    private function replier(): \Closure
    {
        $seq = ++$this->seq;
        $this->replied = false;

        return function (string $body, int $type) use ($seq): void {
            if ($seq !== $this->seq || $this->replied) {
                return;
            }
            $this->replied = true;
            if ($type === Task::REPLY_ACK) {
                $this->relay->send($this->ackFrame);
            } elseif ($type === Task::REPLY_ERROR) {
                $this->relay->send(Frame::encode(Frame::ERROR, [], $body));
            } elseif ($type === Task::REPLY_STOP) {
                $this->stopped = true;
                $this->relay->send(Frame::encode(0, [\strlen(self::STOP_CONTEXT)], self::STOP_CONTEXT));
            } else {
                $this->relay->send(Frame::encode(0, [0], $body));
            }
        };
    }

    private function control(string $payload): void
    {
        $msg = json_decode($payload, true);
        if (!\is_array($msg)) {
            return;
        }
        if (!empty($msg['stop'])) {
            $this->stopped = true;

            return;
        }
        if (isset($msg['pid'])) {
            $this->relay->send(Frame::encode(Frame::CONTROL, [], json_encode(['pid' => getmypid()])));
        }
    }

    private static function redirectOutput(): void
    {
        $stderr = \defined('STDERR') ? \STDERR : fopen('php://stderr', 'wb');
        ob_start(static function (string $chunk) use ($stderr): string {
            if ($chunk !== '' && \is_resource($stderr)) {
                fwrite($stderr, $chunk);
            }

            return '';
        }, 1);
        ini_set('display_errors', 'stderr');
    }
}
