package frame

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// StopContext is the context a worker sends, with an empty body, to ask to
// be retired (PHP Worker::stop()), and also the payload of the stop
// control frame the supervisor sends.
var stopJSON = []byte(`{"stop":true}`)

// StopPayload returns the payload of the stop control frame: {"stop":true}.
func StopPayload() []byte { return bytes.Clone(stopJSON) }

// PidPayload returns the payload of a pid control frame: {"pid":N}.
func PidPayload(pid int) []byte {
	b := make([]byte, 0, 24)
	b = append(b, `{"pid":`...)
	b = strconv.AppendInt(b, int64(pid), 10)
	return append(b, '}')
}

// ParsePid decodes the payload of a pid control frame. It returns an error
// wrapping ErrHandshake if the payload is not {"pid":N} with N > 0.
func ParsePid(payload []byte) (int, error) {
	var m struct {
		Pid *int `json:"pid"`
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		return 0, fmt.Errorf("%w: pid reply %q: %v", ErrHandshake, head(payload, 64), err)
	}
	if m.Pid == nil || *m.Pid <= 0 {
		return 0, fmt.Errorf("%w: pid reply %q has no positive pid", ErrHandshake, head(payload, 64))
	}
	return *m.Pid, nil
}

// IsStop reports whether a control frame payload is {"stop":true}.
func IsStop(payload []byte) bool {
	if bytes.Equal(payload, stopJSON) {
		return true
	}
	var m struct {
		Stop bool `json:"stop"`
	}
	return json.Unmarshal(payload, &m) == nil && m.Stop
}

// IsStopReply reports whether a job reply asks the supervisor to retire
// the worker: context exactly {"stop":true} and an empty body. The
// comparison is byte for byte (what RoadRunner does) so it costs nothing
// on ordinary replies.
func IsStopReply(pl Payload) bool {
	return len(pl.Body) == 0 && bytes.Equal(pl.Context, stopJSON)
}
