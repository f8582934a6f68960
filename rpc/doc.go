// Package rpc is Pipevisor's control plane: a goridge v3 RPC server that
// speaks RoadRunner's jobs.* API (so RoadRunner producers work unchanged)
// plus informer.Workers and resetter.Reset, and the Go client the CLI uses.
//
// # Transport
//
// The server listens on tcp://host:port or unix://path (rpc.listen; a unix
// socket is created with mode 0600). Each connection carries goridge v3
// frames served by Go's net/rpc through goridge's pkg/rpc codec. A request
// frame has flags = the codec, exactly two options [seq, len(method)], and
// payload = "Service.Method" ‖ body. The reply echoes seq and the method
// length, uses the request's codec, and has payload = method ‖ body. On
// failure the reply has the ERROR flag (0x40) added to the codec flag and
// payload = method ‖ error text; the text is the message of the error the
// manager returned, unchanged. Requests on one connection may be pipelined;
// replies carry the seq they answer. A seq may be reused once its reply
// has been sent; a request that reuses the seq of a call still in
// progress ends the connection (ErrDuplicateSeq), as does a header whose
// CRC fails (ErrBadHeader). A request that announces more than the frame
// limit (MaxRequestSize, 64 MiB, or rpc.max_inflight_bytes when smaller)
// gets an error reply, "rpc: request of 65.0 MiB exceeds the RPC frame
// limit of 64 MiB (68157440 > 67108864 bytes)" (a *FrameLimitError, which
// the Client returns as "push of ..." for jobs.Push and jobs.PushBatch),
// once the server has read past its payload; then the connection closes.
// Calls already in progress finish and get their replies before the
// connection closes.
//
// Limits across connections: the server serves at most
// DefaultMaxConnections (1024; WithMaxConnections, rpc.max_connections)
// connections at once; further clients stay in the listener's backlog
// until one closes. Requests hold their announced payload size in a
// budget of DefaultMaxInflightBytes (128 MiB; WithMaxInflightBytes,
// rpc.max_inflight_bytes) from the header's arrival to the reply; a
// request that does not fit waits, its body unread, for up to the frame
// timeout, and then gets an error reply (ErrServerBusy) and the
// connection closes.
//
// Connections may stay open and idle between calls for as long as the
// client likes. Once the first byte of a frame has arrived, the rest of
// it must arrive within the frame timeout (DefaultFrameTimeout, one
// minute; WithFrameTimeout), or the connection ends (ErrFrameTimeout).
// Writing a reply must finish within the frame timeout too, or the
// connection ends at once (ErrReplyTimeout) and the replies of the calls
// still in progress are lost: a client has to read its replies.
//
// A connection has at most DefaultMaxCallsInProgress (128;
// WithMaxCallsInProgress) calls in progress, from the arrival of a
// request to the writing of its reply. At the limit the server reads no
// further requests from it until a reply has been written; pipelined
// requests past the limit wait in the socket buffers and are read as
// calls finish. So past the limit a client must read replies while it is
// still writing requests: one that writes everything before reading
// anything can fill both directions' buffers, and then the connection
// ends with ErrReplyTimeout and the replies of calls that already ran are
// lost. (Every client of ours, and RoadRunner's, has one call in flight
// per connection.)
//
// Codecs: CodecProto (0x80, what RoadRunner's PHP client sends; bodies are
// the jobs.v1 protobuf messages of package jobsv1) and CodecJSON (0x08, what
// Pipevisor's PHP and Python producers send). Golden frames of the JSON
// codec for every jobs method, with their replies, are in rpc/testdata
// (vectors.json describes them); TestGoldenJSONFrames checks them and
// rewrites them with -update.
//
// # JSON bodies
//
// The JSON codec decodes the body into the generated protobuf struct with a
// plain JSON decoder (goridge uses github.com/goccy/go-json), NOT protojson.
// So: field names are the .proto names in snake_case ("auto_ack"); bytes
// are standard base64 with padding; int64/uint64 are JSON numbers (not
// strings); a missing field is its zero value; unknown fields are ignored.
// Replies are encoded the same way with omitempty: a field whose value is
// zero, false or empty is left out of the reply (so an absent "active"
// means 0 and an absent "consuming" means false). The producers write
// compact JSON (no spaces) in the field order shown; the server accepts any
// order and whitespace.
//
// Methods and bodies (request → reply):
//
//	jobs.Push       {"job":JOB}                        → {}
//	jobs.PushBatch  {"jobs":[JOB,...]}                 → {}
//	jobs.Pause      {"pipelines":["a","b"]}            → {}
//	jobs.Resume     {"pipelines":["a"]}                → {}
//	jobs.List       {}                                 → {"pipelines":["a","b"]}
//	jobs.Declare    {"pipeline":{"driver":"memory","name":"reports","priority":"10",...}} → {}
//	jobs.Destroy    {"pipelines":["a"]}                → {"pipelines":["a"]}   (the destroyed ones)
//	jobs.Stat       {}                                 → {"stats":[STAT,...]}
//	jobs.FailedList {"pipeline":"emails","limit":50}   → {"jobs":[FAILED,...]}  (pipeline "": every pipeline; limit 0: all)
//	jobs.FailedShow {"id":"0f8f...","pipeline":""}     → FAILED
//	jobs.FailedRetry  {"ids":["0f8f..."],"all":false,"pipeline":""} → {"ids":[retried,...]}
//	jobs.FailedRemove {"ids":["0f8f..."],"all":false,"pipeline":""} → {"ids":[removed,...]}
//	informer.Workers {"plugin":"jobs"}                 → {"workers":[WORKER,...],"pools":[POOL,...]}
//	resetter.Reset   {"plugin":"jobs","pool":"py"}     → {"ok":true}   (pool "" or absent: every pool)
//
// JOB:
//
//	{"job":"App\\Jobs\\SendMail",           // job name (string)
//	 "id":"0f8fad5b-...",                    // job id; empty or absent: the server generates a UUID
//	 "payload":"eyJ0byI6ImFAZXhhbXBsZS5jb20ifQ==",   // base64 of the payload bytes
//	 "headers":{"x-tenant":{"value":["acme"]}},      // map of name -> {"value":[strings]}
//	 "options":{"priority":5,                // int64, 0 = the pipeline's priority
//	            "pipeline":"emails",         // required
//	            "delay":30,                  // seconds, >= 0
//	            "auto_ack":true,             // ack on receipt
//	            "key":"customer-42"}}        // Pipevisor: ordering key (Kafka key, SQS group, memory lane)
//
// The RoadRunner Kafka options "topic", "metadata", "offset" and
// "partition" are accepted and ignored. Declare values are all strings;
// nested driver options are JSON text inside the string. Declare accepts
// what every version of RoadRunner's PHP SDK sends for its *CreateInfo
// (see config.ParseDeclare; testdata/sdk holds the frames). As in
// RoadRunner, a declared pipeline is consumed at once only when its name
// is in jobs.consume; otherwise jobs.Resume starts it.
//
// STAT (the RoadRunner fields mean what RoadRunner's driver reports; see
// RoadRunnerCounts):
//
//	{"pipeline":"emails","driver":"memory","queue":"emails",
//	 "active":5,        // the backlog: memory queued + running; amqp, sqs: ready in the queue; kafka 0
//	 "delayed":1,       // waiting for a delay (amqp: in the pipeline's delay queues); kafka 0
//	 "reserved":0,      // sqs: received, not yet deleted
//	 "ready":true,      // RoadRunner meaning: the pipeline is consuming (= "consuming")
//	 "priority":10,
//	 "queued":3,        // Pipevisor: waiting on the broker, -1 unknown
//	 "acked":120,"retried":4,"requeued":1,"dead":2,   // Pipevisor: counters since start
//	 "consuming":true,  // Pipevisor: false while paused or the broker is down
//	 "error":"...",     // Pipevisor: why it is not consuming
//	 "running":2,       // Pipevisor: received, not yet settled
//	 "waiting_delay":1} // Pipevisor: waiting for a delay, -1 unknown
//
// WORKER:
//
//	{"pid":4242,"status":"working","num_execs":17,
//	 "created":1763780000000000000,     // start time, Unix nanoseconds
//	 "memory_usage":31457280,            // RSS bytes
//	 "current_job":"0f8fad5b-...",       // empty/absent when idle
//	 "current_job_started":1763780001000000000,  // Unix nanoseconds, 0 when idle
//	 "pool":"default"}                   // the worker's pool ("default": jobs.pool)
//
// POOL (one worker pool):
//
//	{"name":"py","min_workers":1,"max_workers":8,   // equal when it does not scale
//	 "size":5,"running":4,            // the size it keeps now; workers in service
//	 "waiting":12,                    // jobs waiting for a free worker
//	 "scale_ups":3,"scale_downs":1,   // scaling steps since start
//	 "pipelines":["imports"]}         // the pipelines that run on it
//
// FAILED (a dead job):
//
//	{"job":JOB,                 // as last delivered; options.pipeline is its pipeline
//	 "reason":"...",            // the worker's NACK message, the error frame, or crash/exec_ttl with stderr
//	 "attempts":3,              // attempt number of the delivery that died
//	 "died_at":1763780000000000000}  // Unix nanoseconds, absent when unknown
//
// jobs.FailedRetry publishes each selected job to its pipeline again as
// attempt 1 with its headers and removes it from the dead store only once
// the publish was confirmed. An id that no dead store holds makes the call
// an error naming it (the other ids were acted on). A pipeline whose driver
// keeps no failed jobs is an error when named and skipped otherwise.
//
// informer.Workers and resetter.Reset accept an empty plugin or "jobs".
// A resetter.Reset naming a pool that does not exist is an error listing
// the pools ("rpc: unknown worker pool "php" (pools: default, py)").
//
// # Push errors
//
// When the manager did not confirm every job of a jobs.Push or
// jobs.PushBatch, the reply is an ERROR frame (so RoadRunner's SDK throws
// as before) whose text, in both codecs, is the manager's message followed
// by PushReportMarker (" pipevisor-push-report=") and a JSON object that
// sorts every job of the call, by its index in the request, into one of
// three lists of inclusive [first,last] ranges:
//
//	... pipevisor-push-report={"confirmed":[[0,18],[20,20]],"failed":[],"in_doubt":[[19,19]]}
//
// confirmed: the broker confirmed the job. failed: the broker refused it
// or it was never sent; it is not in the queue and may be pushed again.
// in_doubt: it was sent but its confirm was lost (connection or channel
// closed, confirm timeout); it may be in the queue, and pushing it again
// may duplicate it. An error without the marker (an invalid job, an
// unknown pipeline, a request over the frame limit) means nothing was
// published. A client whose call broke before the reply arrived has to
// treat the whole call as in doubt. PushReport reads the report from the
// Go client's error.
//
// # Protobuf
//
// rpc/jobsv1/jobs.proto keeps every RoadRunner jobs.v1 field number and
// type; Pipevisor's additions use numbers from 100 up (Options.key = 100;
// Stat.queued = 100, acked..dead = 101..104, consuming = 105, error = 106,
// running = 107, waiting_delay = 108); the Failed* messages are new.
//
// # Server and client
//
// NewServer wraps a Jobs (the jobs manager) and a Workers (the pool);
// Serve/ServeListener run until their ctx is done and wait for every
// goroutine they started. Dial returns a Client that uses the protobuf
// codec; every method takes a ctx whose deadline and cancellation bound the
// call. When nothing listens, Dial fails with ErrNotRunning.
package rpc
