package memjobs

import (
	"encoding/binary"
	"strings"
)

// pack is the compact form of queued jobs: the plain jobs of one Publish
// call with one priority (no key, no delay), encoded back to back in two
// pointer-free buffers. A queued job costs its id, its payload and about
// six bytes, instead of an item (96 bytes) and two allocations of its own;
// and the garbage collector never scans a pack's buffers.
//
// A job becomes an item only when it is taken: the first take allocates
// the items of the whole pack at once. Items alias the pack's buffers (the
// id is a substring of ids, the payload a sub-slice of data), which are
// never written once a job was taken.
//
// Jobs published one at a time while a backlog builds up are appended to
// an open pack at the tail of their FIFO (see readySet.pushAlone) until
// its first job is taken or it holds maxOpenPack jobs.
type pack struct {
	ids   string   // the jobs' ids back to back
	data  []byte   // one record per job, see packBuilder.add
	names []string // distinct job names; records refer to them by index
	n     int      // jobs in the pack
	prio  int64

	// Read position: the next job to take.
	next    int    // index of the next job
	off     int    // offset of its record in data
	idOff   int    // offset of its id in ids
	nextSeq uint64 // its seq
	items   []item // allocated by the first take

	open *packBuilder // non-nil while jobs may still be appended
}

// maxOpenPack is how many jobs an open pack takes before it is closed.
const maxOpenPack = 1024

// Record flags.
const (
	recAutoAck byte = 1 << iota
	recHeaders
)

// packBuilder encodes jobs into a pack. A record is: flags byte, seq delta
// (uvarint, from the previous job's seq; 0 for the first job), id length, name index and payload length (uvarints),
// the payload, and with recHeaders the headers: count, then per header the
// key length, key, value count and each value's length and bytes.
type packBuilder struct {
	p       *pack
	ids     strings.Builder
	lastSeq uint64
	byName  map[string]int // index of p.names, once they are many
}

// maxScannedNames: up to this many distinct names, nameIndex scans
// p.names; beyond, it keeps a map.
const maxScannedNames = 8

// nameIndex returns the index of name in p.names, adding it if missing.
func (b *packBuilder) nameIndex(name string) int {
	names := b.p.names
	if n := len(names); n > 0 && names[n-1] == name {
		return n - 1 // names repeat in runs
	}
	if b.byName != nil {
		if i, ok := b.byName[name]; ok {
			return i
		}
	} else {
		for i, n := range names {
			if n == name {
				return i
			}
		}
	}
	i := len(names)
	b.p.names = append(names, name)
	switch {
	case b.byName != nil:
		b.byName[name] = i
	case len(b.p.names) > maxScannedNames:
		b.byName = make(map[string]int, 2*len(b.p.names))
		for k, n := range b.p.names {
			b.byName[n] = k
		}
	}
	return i
}

// newPackBuilder starts a pack of priority prio; the hints are the
// expected sizes of data and ids.
func newPackBuilder(prio int64, dataHint, idsHint int) *packBuilder {
	b := &packBuilder{p: &pack{prio: prio, data: make([]byte, 0, dataHint)}}
	b.ids.Grow(idsHint)
	return b
}

// add appends one job, which gets sequence number seq (larger than that
// of every job added before).
func (b *packBuilder) add(seq uint64, id, name string, payload []byte, headers map[string][]string, autoAck bool) {
	p := b.p
	if p.n == 0 {
		p.nextSeq, b.lastSeq = seq, seq
	}
	var flags byte
	if autoAck {
		flags |= recAutoAck
	}
	if len(headers) > 0 {
		flags |= recHeaders
	}
	ni := b.nameIndex(name)
	d := append(p.data, flags)
	d = binary.AppendUvarint(d, seq-b.lastSeq)
	d = binary.AppendUvarint(d, uint64(len(id)))
	d = binary.AppendUvarint(d, uint64(ni))
	d = binary.AppendUvarint(d, uint64(len(payload)))
	d = append(d, payload...)
	if flags&recHeaders != 0 {
		d = binary.AppendUvarint(d, uint64(len(headers)))
		for k, vs := range headers {
			d = appendString(d, k)
			d = binary.AppendUvarint(d, uint64(len(vs)))
			for _, v := range vs {
				d = appendString(d, v)
			}
		}
	}
	p.data = d
	b.ids.WriteString(id)
	b.lastSeq = seq
	p.n++
}

// finish returns the built pack, with its first job as the next to take.
// A data buffer much larger than its records is copied to fit: the pack
// may stay queued for long.
func (b *packBuilder) finish() *pack {
	p := b.p
	if cap(p.data)-len(p.data) > len(p.data)/8 {
		p.data = append(make([]byte, 0, len(p.data)), p.data...)
	}
	p.ids = b.ids.String()
	return p
}

// appendOpen adds one job to the open pack p (see readySet.pushAlone),
// and closes it once it is full.
func (p *pack) appendOpen(it *item) {
	b := p.open
	b.add(it.seq, it.id, it.name, it.payload, it.headers, it.autoAck)
	p.ids = b.ids.String() // earlier substrings stay valid: a Builder never rewrites
	if p.n >= maxOpenPack {
		b.finish()
		p.open = nil
	}
}

func appendString(d []byte, s string) []byte {
	d = binary.AppendUvarint(d, uint64(len(s)))
	return append(d, s...)
}

// left is how many jobs are still to be taken.
func (p *pack) left() int { return p.n - p.next }

// take decodes the next job into its item and advances; the pack must
// not be exhausted. The item is fresh: attempt 1, no lane, state unset.
func (p *pack) take() *item {
	if p.items == nil {
		p.open = nil // the items alias the buffers from now on
		p.items = make([]item, p.n)
	}
	it := &p.items[p.next]
	d := p.data[p.off:]
	flags := d[0]
	d = d[1:]
	_, d = uvarint(d) // seq delta: p.nextSeq already holds the seq
	idLen, d := uvarint(d)
	ni, d := uvarint(d)
	pl, d := uvarint(d)
	it.id = p.ids[p.idOff : p.idOff+int(idLen)]
	it.name = p.names[ni]
	it.payload = d[:pl:pl]
	d = d[pl:]
	if flags&recHeaders != 0 {
		it.headers, d = decodeHeaders(d)
	}
	it.prio = p.prio
	it.seq = p.nextSeq
	it.attempt = 1
	it.autoAck = flags&recAutoAck != 0
	it.packed = true

	p.next++
	p.idOff += int(idLen)
	p.off = len(p.data) - len(d)
	if p.next < p.n {
		delta, _ := uvarint(d[1:])
		p.nextSeq += delta
	} else {
		// Exhausted: the pack is dropped by its FIFO; the items keep
		// what they alias.
		p.data, p.names = nil, nil
		p.ids = ""
	}
	return it
}

func uvarint(d []byte) (uint64, []byte) {
	v, n := binary.Uvarint(d)
	return v, d[n:]
}

func decodeHeaders(d []byte) (map[string][]string, []byte) {
	n, d := uvarint(d)
	h := make(map[string][]string, n)
	for range n {
		var k string
		k, d = decodeString(d)
		var nv uint64
		nv, d = uvarint(d)
		vs := make([]string, nv)
		for i := range vs {
			vs[i], d = decodeString(d)
		}
		h[k] = vs
	}
	return h, d
}

func decodeString(d []byte) (string, []byte) {
	l, d := uvarint(d)
	return string(d[:l]), d[l:]
}
