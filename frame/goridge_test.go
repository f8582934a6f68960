package frame

import (
	"bytes"
	"io"
	"testing"

	gf "github.com/roadrunner-server/goridge/v3/pkg/frame"
	"github.com/roadrunner-server/goridge/v3/pkg/pipe"
)

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// goridgeEncode builds a frame with goridge's own encoder only.
func goridgeEncode(flags byte, opts []uint32, payload []byte) []byte {
	f := gf.NewFrame()
	f.WriteVersion(f.Header(), gf.Version1)
	f.WriteFlags(f.Header(), flags)
	if len(opts) > 0 {
		f.WriteOptions(f.HeaderPtr(), opts...)
	}
	f.WritePayloadLen(f.Header(), uint32(len(payload)))
	f.WritePayload(payload)
	f.WriteCRC(f.Header())
	return f.Bytes()
}

func TestAgainstGoridge(t *testing.T) {
	cases := goldenVectors()
	cases = append(cases, vector{Name: "ten-options", Flags: FlagCodecJSON, Options: []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 0xffffffff}, Body: "x"})
	for _, v := range cases {
		payload := []byte(v.Context + v.Body)
		ours := encodeVector(v)
		theirs := goridgeEncode(v.Flags, v.Options, payload)
		if !bytes.Equal(ours, theirs) {
			t.Errorf("%s: AppendFrame\n%x\ngoridge\n%x", v.Name, ours, theirs)
		}
		// goridge's pipe relay decodes our bytes to the same frame.
		var sink bytes.Buffer
		rl := pipe.NewPipeRelay(io.NopCloser(bytes.NewReader(ours)), nopWriteCloser{&sink})
		fr := gf.NewFrame()
		if err := rl.Receive(fr); err != nil {
			t.Fatalf("%s: goridge Receive: %v", v.Name, err)
		}
		if fr.ReadFlags() != v.Flags || !bytes.Equal(fr.Payload(), payload) {
			t.Errorf("%s: goridge decoded flags %#x payload %q", v.Name, fr.ReadFlags(), fr.Payload())
		}
		gotOpts := fr.ReadOptions(fr.Header())
		if len(gotOpts) != len(v.Options) {
			t.Fatalf("%s: goridge decoded options %v, want %v", v.Name, gotOpts, v.Options)
		}
		for i := range gotOpts {
			if gotOpts[i] != v.Options[i] {
				t.Errorf("%s: option %d = %d, want %d", v.Name, i, gotOpts[i], v.Options[i])
			}
		}
		// And our Reader decodes goridge's bytes to the same frame.
		f, err := NewReader(bytes.NewReader(theirs)).ReadFrame()
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if f.Flags != v.Flags || string(f.Payload) != string(payload) || len(f.Options) != len(v.Options) {
			t.Errorf("%s: Reader decoded %+v", v.Name, f)
		}
	}
}

func TestAppendFrameReusesBuffer(t *testing.T) {
	buf := make([]byte, 0, 256)
	pl := Payload{Context: []byte(`{"id":"1"}`), Body: []byte("body")}
	opts := []uint32{uint32(len(pl.Context))}
	allocs := testing.AllocsPerRun(100, func() {
		buf = AppendFrame(buf[:0], FlagCodecRaw, opts, pl.Context, pl.Body)
	})
	if allocs != 0 {
		t.Fatalf("AppendFrame into a buffer with room allocated %.1f times per call", allocs)
	}
	if !bytes.Equal(buf, EncodeExec(pl)) {
		t.Fatalf("AppendFrame and EncodeExec disagree")
	}
}
