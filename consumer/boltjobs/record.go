package boltjobs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// recordVersion is the first byte of every job record written; a record
// whose first byte is neither it nor recordVersion1 is reported as
// corrupt.
const recordVersion = 2

// recordVersion1 records have no enqueue time (record.enq): decodeRecord
// leaves it zero.
const recordVersion1 = 1

const flagAutoAck = 1

// errBadRecord is wrapped by the error of a record that does not decode.
var errBadRecord = errors.New("malformed job record")

// record is a job as it is stored: one value of a pipeline's jobs bucket,
// keyed by its sequence number (8 bytes, big endian: publish order).
type record struct {
	id, name, key string
	payload       []byte
	headers       map[string][]string
	prio          int64
	attempt       int32
	autoAck       bool
	due           int64 // wall-clock deadline in Unix ns; 0: none
	// enq is when the job entered the ready order, in Unix ns: its push,
	// or the end of its latest delay (then equal to due). A job handed
	// back without a delay keeps it. Zero: unknown (a version 1 record).
	enq int64
}

// seqKey returns the bucket key of sequence number seq.
func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// keySeq is the inverse of seqKey; ok is false for a key of another size.
func keySeq(k []byte) (uint64, bool) {
	if len(k) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k), true
}

// encode appends the record's bytes to dst. Header keys are written in
// sorted order, so equal records encode to equal bytes.
func (r *record) encode(dst []byte) []byte {
	var flags byte
	if r.autoAck {
		flags |= flagAutoAck
	}
	dst = append(dst, recordVersion, flags)
	dst = binary.AppendUvarint(dst, uint64(r.attempt))
	dst = binary.AppendVarint(dst, r.prio)
	dst = binary.AppendVarint(dst, r.due)
	dst = binary.AppendVarint(dst, r.enq)
	dst = appendString(dst, r.id)
	dst = appendString(dst, r.name)
	dst = appendString(dst, r.key)
	dst = binary.AppendUvarint(dst, uint64(len(r.headers)))
	if len(r.headers) > 0 {
		keys := make([]string, 0, len(r.headers))
		for k := range r.headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			vs := r.headers[k]
			dst = appendString(dst, k)
			dst = binary.AppendUvarint(dst, uint64(len(vs)))
			for _, v := range vs {
				dst = appendString(dst, v)
			}
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.payload)))
	return append(dst, r.payload...)
}

// encodedSize is about the size of the encoded record, for buffer hints.
func (r *record) encodedSize() int {
	n := 2 + 4*binary.MaxVarintLen64 + 4*binary.MaxVarintLen32 + len(r.id) + len(r.name) + len(r.key) + len(r.payload)
	for k, vs := range r.headers {
		n += 2*binary.MaxVarintLen32 + len(k)
		for _, v := range vs {
			n += binary.MaxVarintLen32 + len(v)
		}
	}
	return n
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decodeRecord decodes b, which it does not retain (bbolt's values are
// only valid inside their transaction).
func decodeRecord(b []byte) (record, error) {
	d := decoder{b: b}
	var r record
	v := d.byte()
	if v != recordVersion && v != recordVersion1 {
		return r, fmt.Errorf("%w: version %d", errBadRecord, v)
	}
	r.autoAck = d.byte()&flagAutoAck != 0
	r.attempt = int32(d.uvarint())
	r.prio = d.varint()
	r.due = d.varint()
	if v != recordVersion1 {
		r.enq = d.varint()
	}
	r.id = d.string()
	r.name = d.string()
	r.key = d.string()
	if n := d.uvarint(); n > 0 && d.err == nil {
		if n > uint64(len(d.b)) {
			return r, fmt.Errorf("%w: %d headers in %d bytes", errBadRecord, n, len(d.b))
		}
		r.headers = make(map[string][]string, n)
		for range n {
			k := d.string()
			m := d.uvarint()
			if m > uint64(len(d.b)) {
				d.err = errBadRecord
				break
			}
			vs := make([]string, 0, m)
			for range m {
				vs = append(vs, d.string())
			}
			r.headers[k] = vs
		}
	}
	r.payload = append([]byte{}, d.bytes()...)
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errBadRecord, len(d.b))
	}
	return r, d.err
}

// decoder reads the fields of a record; the first error sticks and every
// later read returns a zero value.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated", errBadRecord)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) string() string { return string(d.bytes()) }

// deadRecord is a dead job as stored in a pipeline's dead bucket, keyed by
// the job's sequence number: why and when it died, then its record.
type deadRecord struct {
	reason string
	at     int64 // Unix ns
	rec    record
}

func (r *deadRecord) encode(dst []byte) []byte {
	dst = appendString(dst, r.reason)
	dst = binary.AppendVarint(dst, r.at)
	return r.rec.encode(dst)
}

func decodeDeadRecord(b []byte) (deadRecord, error) {
	d := decoder{b: b}
	var r deadRecord
	r.reason = d.string()
	r.at = d.varint()
	if d.err != nil {
		return r, d.err
	}
	rec, err := decodeRecord(d.b)
	r.rec = rec
	return r, err
}
