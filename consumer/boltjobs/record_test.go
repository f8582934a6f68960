package boltjobs

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// A record decodes to what was encoded, its enqueue time included; a
// version 1 record (written before enqueue times were kept) still
// decodes, with no enqueue time.
func TestRecordRoundTrip(t *testing.T) {
	r := record{id: "id", name: "Job", key: "k", payload: []byte("body"),
		headers: map[string][]string{"x-a": {"1", "2"}}, prio: 7, attempt: 3, autoAck: true, due: 42, enq: 41}
	got, err := decodeRecord(r.encode(nil))
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("decode(encode(r)) = %+v, %v; want %+v", got, err, r)
	}

	// Version 1: as version 2 without the enqueue time.
	v1 := []byte{recordVersion1, 0}
	v1 = binary.AppendUvarint(v1, 1) // attempt
	v1 = binary.AppendVarint(v1, 10) // prio
	v1 = binary.AppendVarint(v1, 99) // due
	v1 = appendString(v1, "old")     // id
	v1 = appendString(v1, "Old")     // name
	v1 = appendString(v1, "")        // key
	v1 = binary.AppendUvarint(v1, 0) // headers
	v1 = appendString(v1, "p")       // payload
	want := record{id: "old", name: "Old", payload: []byte("p"), prio: 10, attempt: 1, due: 99}
	got, err = decodeRecord(v1)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("decode(version 1) = %+v, %v; want %+v", got, err, want)
	}
	if _, err := decodeRecord(append([]byte{9}, v1[1:]...)); err == nil {
		t.Error("a record of version 9 decoded")
	}
}
