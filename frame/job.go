package frame

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Payload is what travels in one exec frame, in either direction: option 0
// of the frame is len(Context) and the frame payload is Context ‖ Body.
type Payload struct {
	Context []byte
	Body    []byte
}

// JobContext is the context JSON of a job frame, field for field what
// RoadRunner's drivers send (roadrunner-protocol.md §3.1). Topic, Partition
// and Offset are sent for Kafka only.
type JobContext struct {
	ID        string              `json:"id"`
	Job       string              `json:"job"`
	Driver    string              `json:"driver"`
	Queue     string              `json:"queue,omitempty"`
	Headers   map[string][]string `json:"headers"`
	Pipeline  string              `json:"pipeline"`
	Topic     string              `json:"topic,omitempty"`
	Partition *int32              `json:"partition,omitempty"`
	Offset    *int64              `json:"offset,omitempty"`
}

// ReplyType is the "type" field of a worker reply.
type ReplyType int

// Reply types, as RoadRunner's jobs protocol numbers them.
const (
	ReplyNoError ReplyType = 0 // deprecated: ack
	ReplyError   ReplyType = 1 // deprecated: nack with the requeue flag
	ReplyAck     ReplyType = 2
	ReplyNack    ReplyType = 3
	ReplyRequeue ReplyType = 4
)

// ReplyData is the "data" object of a worker reply. One struct serves every
// reply type. ParseReply reads headers in every shape RoadRunner's PHP SDK
// writes them (see decodeReplyHeaders); encoding writes them as an object.
type ReplyData struct {
	Message      string              `json:"message,omitempty"`
	Requeue      bool                `json:"requeue,omitempty"`
	DelaySeconds int64               `json:"delay_seconds,omitempty"`
	Headers      map[string][]string `json:"headers,omitempty"`
}

// Reply is the JSON body of a worker's response to a job frame.
type Reply struct {
	Type ReplyType `json:"type"`
	Data ReplyData `json:"data"`
}

// ParseReply decodes the body of a worker's reply. An empty body is an ACK
// (RoadRunner compatibility). A body that is not a reply object, or has an
// unknown type, is an error wrapping ErrBadReply: the pipeline retries such
// a job instead of acking it. The data's headers are read in every shape
// RoadRunner's PHP SDK versions write them (decodeReplyHeaders): a worker's
// headers on a REQUEUE or a legacy fail() with requeue are never dropped.
//
// The bodies an acking worker usually sends (our PHP and Python clients'
// `{"type":2,"data":{}}`, RoadRunner's PHP client's `{"type":2,"data":[]}`
// and their legacy type-0 forms) are recognised by a byte comparison
// without decoding JSON: this runs once per job.
func ParseReply(body []byte) (Reply, error) {
	if t, ok := constReply(body); ok {
		return Reply{Type: t}, nil
	}
	return parseReplyJSON(body)
}

// parseReplyJSON is ParseReply without the constant-body fast path.
func parseReplyJSON(body []byte) (Reply, error) {
	if len(body) == 0 {
		return Reply{Type: ReplyAck}, nil
	}
	var r struct {
		Type *ReplyType      `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return Reply{}, fmt.Errorf("%w: %v (reply started with %q)", ErrBadReply, err, head(body, 64))
	}
	var data ReplyData
	// PHP's json_encode turns an empty data array into [], not {}.
	if d := bytes.TrimSpace(r.Data); len(d) > 0 && !bytes.Equal(d, []byte("[]")) && !bytes.Equal(d, []byte("null")) {
		var wire struct {
			Message      string          `json:"message"`
			Requeue      bool            `json:"requeue"`
			DelaySeconds int64           `json:"delay_seconds"`
			Headers      json.RawMessage `json:"headers"`
		}
		if err := json.Unmarshal(d, &wire); err != nil {
			return Reply{}, fmt.Errorf("%w: data: %v (reply started with %q)", ErrBadReply, err, head(body, 64))
		}
		h, err := decodeReplyHeaders(wire.Headers)
		if err != nil {
			return Reply{}, fmt.Errorf("%w: data.headers: %v (reply started with %q)", ErrBadReply, err, head(body, 64))
		}
		data = ReplyData{Message: wire.Message, Requeue: wire.Requeue, DelaySeconds: wire.DelaySeconds, Headers: h}
	}
	if r.Type == nil {
		return Reply{}, fmt.Errorf("%w: no \"type\" field (reply started with %q)", ErrBadReply, head(body, 64))
	}
	if *r.Type < ReplyNoError || *r.Type > ReplyRequeue {
		return Reply{}, fmt.Errorf("%w: unknown type %d", ErrBadReply, *r.Type)
	}
	return Reply{Type: *r.Type, Data: data}, nil
}

// constReply recognises the empty body and the data-less ack bodies
// workers send byte for byte.
func constReply(body []byte) (ReplyType, bool) {
	switch string(body) { // no allocation: the conversion is only compared
	case "", `{"type":2,"data":{}}`, `{"type":2,"data":[]}`, `{"type":2}`:
		return ReplyAck, true
	case `{"type":0,"data":{}}`, `{"type":0,"data":[]}`:
		return ReplyNoError, true
	}
	return 0, false
}

func head(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
