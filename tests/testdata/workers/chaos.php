<?php
// Chaos test worker: each job name is a way a worker can break the
// protocol or die, done on the job's first attempt only (later attempts
// ack), except always-crash, which crashes on every attempt. The faults
// reach the real protocol pipe: the worker builds the php-client relay
// itself and writes raw bytes through it (or closes its stream, or hands
// it to a child), bypassing the client's stdout-to-stderr redirection.
//
// Lines appended to the file named by E2E_LOG:
//   start <id> <attempt> <pid> <name>   the job arrived
//   fault <id> <attempt> <pid> <name>   the fault is about to happen
//   child <id> <pid>                    orphan: the child holding stdout
//   ack <id> <attempt> <pid>            about to send the ack
//   done <id> <attempt> ack             the ack frame was written
//
// Job names:
//   ack           acks after sleeping <payload> ms
//   garbage       writes text that is not a frame, then waits for a job
//   truncated     writes the first half of an ack frame, then exits 0
//   bad-header    writes a header whose length field says 15 words (at
//                 most 13 exist), with a valid CRC, then waits for a job
//   huge-length   writes a header announcing a 2 GiB reply, a few bytes of
//                 it, then hangs (exec_ttl ends it)
//   close-stdout  closes the protocol stream and sleeps; logs, 1 s later,
//                 alive <id> <attempt> <pid> (the supervisor should have
//                 killed it by then, as its stdout ended)
//   orphan        starts `setsid sleep 30` holding the protocol stream
//                 (and stderr), then exits 70
//   hang          sleeps (exec_ttl ends it)
//   bloat         holds 160 MiB for 800 ms, then acks (max_worker_memory
//                 retires the worker after the job)
//   crash         exits 70
//   always-crash  exits 70 on every attempt
declare(strict_types=1);

require __DIR__ . '/../../../php-client/autoload.php';

use Pipevisor\Consumer;
use Pipevisor\Frame;
use Pipevisor\Relay;
use Pipevisor\Task;

$log = getenv('E2E_LOG') ?: '/dev/null';

function logLine(string $log, string $line): void
{
    file_put_contents($log, $line . "\n", FILE_APPEND | LOCK_EX);
}

$relay = Relay::create('pipes', moveOffStdout: true, moveOffStdin: true);
/** @var resource $out the protocol stream (the worker's original stdout) */
$out = (fn () => $this->out)->call($relay);
$consumer = new Consumer($relay);
$pid = getmypid();

while ($task = $consumer->waitTask()) {
    $id = $task->getId();
    $attempt = $task->getAttempt();
    $name = $task->getName();
    logLine($log, "start $id $attempt $pid $name");
    if ($name === 'always-crash' || ($name !== 'ack' && $attempt === 1)) {
        logLine($log, "fault $id $attempt $pid $name");
        switch ($name) {
            case 'garbage':
                $relay->send("PHP Warning: this is not a frame, it is text on stdout\n");
                continue 2;
            case 'truncated':
                $ack = Frame::encode(0, [0], Task::ACK_BODY);
                $relay->send(substr($ack, 0, intdiv(strlen($ack), 2)));
                exit(0);
            case 'bad-header':
                $head = chr((Frame::VERSION << 4) | 15) . "\0" . pack('V', 4);
                $relay->send($head . pack('V', crc32($head)) . "\0\0" . str_repeat("\0", 48) . 'ack!');
                continue 2;
            case 'huge-length':
                $head = chr((Frame::VERSION << 4) | 4) . "\0" . pack('V', 0x7FFFFFFF);
                $relay->send($head . pack('V', crc32($head)) . "\0\0" . pack('V', 0) . '{"type":2');
                sleep(3600);
                exit(1);
            case 'close-stdout':
                fclose($out);
                usleep(1_000_000);
                logLine($log, "alive $id $attempt $pid");
                sleep(3600);
                exit(1);
            case 'orphan':
                $child = proc_open(['setsid', 'sleep', '30'], [1 => $out], $pipes);
                logLine($log, "child $id " . proc_get_status($child)['pid']);
                exit(70);
            case 'hang':
                sleep(3600);
                exit(1);
            case 'bloat':
                $hold = str_repeat('x', 160 << 20);
                usleep(800_000);
                unset($hold);
                break; // acks below
            case 'crash':
            case 'always-crash':
                exit(70);
            default:
                fwrite(STDERR, "chaos.php: unknown job name $name\n");
                exit(2);
        }
    } elseif ($name === 'ack') {
        usleep(((int) $task->getPayload()) * 1000);
    }
    logLine($log, "ack $id $attempt $pid");
    $task->ack();
    logLine($log, "done $id $attempt ack");
}
