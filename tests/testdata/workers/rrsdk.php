<?php
// End-to-end test worker that answers jobs with exactly the bytes
// RoadRunner's PHP SDK (spiral/roadrunner-jobs ReceivedTask over
// roadrunner-worker) writes, built here from our client's low-level Relay
// and Frame classes: replies are frames with flags 0 and option 0 = 0
// (an empty header), the body being the SDK's json_encode of
// ['type' => T, 'data' => D]. The task's headers are the job context's
// "headers" (the SDK's ReceivedTask keeps them and sends them all back).
//
// Jobs by name, modelled on RoadRunner's own test workers:
//   rr-fail-count     $n = (int) getHeaderLine('attempts') + 1; past 3 it
//                     calls complete() (type 0), else
//                     withHeader('attempts', $n)->withDelay(D)->fail('failed', true)
//                     (type 1). The payload is {"delay": D, "sdk": "4"|"2"}:
//                     SDK 2.0-2.8 keeps the header value an integer, 2.9
//                     and 4.x cast it to a string.
//   rr-requeue-count  $n = (int) getHeaderLine('attempts'); at 10 it calls
//                     ack() (type 2), else
//                     withHeader('attempts', $n + 1)->requeue('again') (type 4).
//   rr-crash          the worker process exits without replying.
// Each job start is appended to $E2E_LOG as
//   rrjob <id> <x-attempt header> <unix-ms> <attempts header or ->
declare(strict_types=1);

require __DIR__ . '/../../../php-client/autoload.php';

use Pipevisor\Frame;
use Pipevisor\Relay;

$log = getenv('E2E_LOG') ?: '/dev/null';
$relay = Relay::create('pipes');

/** The SDK's Worker::respond(new Payload($body)): flags 0, options [strlen('')]. */
function respond(Relay $relay, int $type, array $data): void
{
    $relay->send(Frame::encode(0, [0], json_encode(['type' => $type, 'data' => $data], JSON_THROW_ON_ERROR)));
}

/** The SDK's withHeader($name, $value) on the task's headers. */
function withHeader(array $headers, string $name, int $value, string $sdk): array
{
    $headers[$name] = [];
    $headers[$name][] = $sdk === '2' ? $value : (string) $value;

    return $headers;
}

while (($frame = $relay->receive()) !== null) {
    if (($frame->flags & Frame::CONTROL) !== 0) {
        $msg = json_decode($frame->payload, true);
        if (!empty($msg['stop'])) {
            break;
        }
        if (isset($msg['pid'])) {
            $relay->send(Frame::encode(Frame::CONTROL, [], json_encode(['pid' => getmypid()])));
        }
        continue;
    }
    $ctxLen = $frame->options[0];
    $context = json_decode(substr($frame->payload, 0, $ctxLen), true, 512, JSON_THROW_ON_ERROR);
    $body = (string) substr($frame->payload, $ctxLen);
    $headers = $context['headers'] ?? [];
    $line = implode(',', $headers['attempts'] ?? []);
    file_put_contents($log, sprintf("rrjob %s %s %d %s\n", $context['id'], implode(',', $headers['x-attempt'] ?? []),
        (int) (microtime(true) * 1000), $line === '' ? '-' : $line), FILE_APPEND | LOCK_EX);

    switch ($context['job']) {
        case 'rr-fail-count':
            $opts = json_decode($body, true, 512, JSON_THROW_ON_ERROR);
            $n = (int) $line + 1;
            if ($n > 3) {
                respond($relay, 0, []);
                break;
            }
            $data = ['message' => 'failed', 'requeue' => true, 'delay_seconds' => (int) $opts['delay']];
            $headers = withHeader($headers, 'attempts', $n, (string) $opts['sdk']);
            if (!empty($headers)) {
                $data['headers'] = $headers;
            }
            respond($relay, 1, $data);
            break;
        case 'rr-requeue-count':
            $n = (int) $line;
            if ($n >= 10) {
                respond($relay, 2, []);
                break;
            }
            $data = ['message' => 'again', 'delay_seconds' => 0];
            $headers = withHeader($headers, 'attempts', $n + 1, '4');
            if (!empty($headers)) {
                $data['headers'] = $headers;
            }
            respond($relay, 4, $data);
            break;
        case 'rr-crash':
            exit(1);
        default:
            respond($relay, 2, []);
    }
}
