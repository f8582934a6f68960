package kafkajobs

import (
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Commits carry, besides the offset (the first record not yet done), the
// offsets beyond it that are already done, in the commit metadata:
// "pv1:" then comma-separated ranges "a-b" or single offsets "a". A
// consumer that takes the partition over (after a restart or a rebalance)
// reads them and does not run those records again: only jobs that were
// never settled come back. The list is capped at doneMetaMax bytes (Kafka
// rejects metadata over offset.metadata.max.bytes, 4096 by default);
// ranges past the cap are left out, which only means those jobs may run
// twice.
const (
	doneMetaPrefix = "pv1:"
	doneMetaMax    = 3000
)

// offsetRange is an inclusive range of offsets.
type offsetRange struct{ from, to int64 }

// commitPoint is what one partition commits.
type commitPoint struct {
	offset kgo.EpochOffset
	meta   string
}

// commitPointLocked returns the commit of ps: the offset of its first
// record not done (or one past the last done record when nothing is
// pending) and the done offsets beyond it: those of the fetched entries,
// then those the previous owner listed (ps.skip) past what was fetched,
// so that a commit made before they are all fetched passes them on to the
// next owner. ok is false before anything was done on ps.
func (ps *partState) commitPointLocked() (commitPoint, bool) {
	if len(ps.entries) == 0 {
		if !ps.hasPopped {
			return commitPoint{}, false
		}
		return commitPoint{offset: ps.popped, meta: encodeDone(nil, ps.skip, ps.next)}, true
	}
	first := ps.entries[0].rec.Offset
	cp := commitPoint{offset: kgo.EpochOffset{Epoch: -1, Offset: first}}
	if ps.hasPopped && ps.popped.Offset == first {
		cp.offset.Epoch = ps.popped.Epoch
	}
	cp.meta = encodeDone(ps.entries, ps.skip, ps.next)
	return cp, true
}

// encodeDone lists the done entries as ranges of consecutive done
// entries, then the parts of the inherited ranges at or past unfetched
// (the first offset not fetched; ranges and entries in offset order). The
// result is at most doneMetaMax bytes: the ranges that do not fit, the
// highest offsets, are left out. Nothing done yields "".
func encodeDone(entries []*entry, inherited []offsetRange, unfetched int64) string {
	var w doneWriter
	for i := 0; i < len(entries); {
		if entries[i].state != stateDone {
			i++
			continue
		}
		j := i
		for j+1 < len(entries) && entries[j+1].state == stateDone {
			j++
		}
		if !w.add(entries[i].rec.Offset, entries[j].rec.Offset) {
			return w.String()
		}
		i = j + 1
	}
	for _, r := range inherited {
		if r.to < unfetched {
			continue
		}
		if !w.add(max(r.from, unfetched), r.to) {
			break
		}
	}
	return w.String()
}

// doneWriter builds the commit metadata of encodeDone.
type doneWriter struct {
	b    []byte
	full bool // a range did not fit: nothing more is added
}

// add appends the range from-to unless the metadata would exceed
// doneMetaMax; it reports whether it did.
func (w *doneWriter) add(from, to int64) bool {
	if w.full {
		return false
	}
	var buf [42]byte
	part := buf[:0]
	if len(w.b) > 0 {
		part = append(part, ',')
	}
	part = strconv.AppendInt(part, from, 10)
	if to > from {
		part = append(part, '-')
		part = strconv.AppendInt(part, to, 10)
	}
	if len(doneMetaPrefix)+len(w.b)+len(part) > doneMetaMax {
		w.full = true
		return false
	}
	w.b = append(w.b, part...)
	return true
}

// String returns the metadata: doneMetaPrefix and the ranges, or "" when
// there are none.
func (w *doneWriter) String() string {
	if len(w.b) == 0 {
		return ""
	}
	return doneMetaPrefix + string(w.b)
}

// decodeDone parses commit metadata written by encodeDone; anything else
// (another client's metadata, garbage) yields nil.
func decodeDone(meta string) []offsetRange {
	rest, ok := strings.CutPrefix(meta, doneMetaPrefix)
	if !ok || rest == "" {
		return nil
	}
	var out []offsetRange
	for _, f := range strings.Split(rest, ",") {
		a, b, isRange := strings.Cut(f, "-")
		from, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return nil
		}
		to := from
		if isRange {
			if to, err = strconv.ParseInt(b, 10, 64); err != nil || to < from {
				return nil
			}
		}
		out = append(out, offsetRange{from, to})
	}
	return out
}

// inRanges reports whether off lies in one of rs.
func inRanges(rs []offsetRange, off int64) bool {
	for _, r := range rs {
		if off >= r.from && off <= r.to {
			return true
		}
	}
	return false
}
