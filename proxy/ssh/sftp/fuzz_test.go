package sftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"
)

// framed puts a length field before body, so the fuzzers spend their time
// on fields rather than on the length check.
func framed(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// FuzzReader feeds arbitrary streams to a Reader, with OpenSSH's limit and
// with a small one, and checks that it never panics, that every packet is
// whole (its length field matches, its type is its fifth byte, it is
// within the limit), that the packets and what is left explain the stream
// byte for byte, and that it ends with io.EOF only at a packet boundary.
//
// The seed corpus is in testdata/fuzz/FuzzReader.
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, stream []byte) {
		for _, limit := range []int{MaxPacketLength, 16} {
			r := NewReaderSize(bytes.NewReader(stream), limit)
			consumed := 0
			var err error
			for {
				var p Packet
				p, err = r.Next()
				if err != nil {
					break
				}
				n := binary.BigEndian.Uint32(p.Raw)
				if int(n) != len(p.Raw)-4 || n == 0 || int(n) > limit || p.Type != PacketType(p.Raw[4]) {
					t.Fatalf("packet %x: length %d, type %v, limit %d", p.Raw, n, p.Type, limit)
				}
				if !bytes.Equal(p.Raw, stream[consumed:consumed+len(p.Raw)]) {
					t.Fatalf("packet %x is not the stream's bytes at %d", p.Raw, consumed)
				}
				consumed += len(p.Raw)
			}
			switch {
			case err == io.EOF:
				if consumed != len(stream) {
					t.Fatalf("io.EOF with %d of %d bytes read", consumed, len(stream))
				}
			case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrPacketTooLarge), errors.Is(err, ErrMalformed):
				if consumed == len(stream) {
					t.Fatalf("%v with the whole stream read", err)
				}
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
	})
}

// FuzzParseRequest parses arbitrary packet bodies as client packets and
// checks that ParseRequest never panics, returns only ErrMalformed errors
// and no value with them, and that a parsed request rebuilt by the test's
// encoder parses to the same request (every field was read from where the
// protocol puts it). The raw bytes are also parsed without a length field
// added, for the framing checks.
//
// The seed corpus is in testdata/fuzz/FuzzParseRequest.
func FuzzParseRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := ParseRequest(body); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseRequest(%x): %v", body, err)
		}
		req, err := ParseRequest(framed(body))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseRequest: error %v is not ErrMalformed", err)
			}
			if !reflect.DeepEqual(req, Request{}) {
				t.Fatalf("ParseRequest returned %+v with %v", req, err)
			}
			return
		}
		if req.Op == "" {
			t.Fatalf("ParseRequest(%x) has no Op", body)
		}
		again, ok := encodeRequest(req)
		if !ok {
			return
		}
		req2, err := ParseRequest(again)
		if err != nil {
			t.Fatalf("request %+v rebuilt as %x: %v", req, again, err)
		}
		if !reflect.DeepEqual(req, req2) {
			t.Fatalf("request %+v rebuilt parses as %+v", req, req2)
		}
	})
}

// FuzzParseResponse is FuzzParseRequest for server packets; ErrUnknownType
// is an expected error too.
//
// The seed corpus is in testdata/fuzz/FuzzParseResponse.
func FuzzParseResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := ParseResponse(body); err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownType) {
			t.Fatalf("ParseResponse(%x): %v", body, err)
		}
		resp, err := ParseResponse(framed(body))
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownType) {
				t.Fatalf("ParseResponse: unexpected error %v", err)
			}
			if !reflect.DeepEqual(resp, Response{}) {
				t.Fatalf("ParseResponse returned %+v with %v", resp, err)
			}
			return
		}
		if len(resp.Names) > MaxNames || len(resp.Names) > int(resp.Count) {
			t.Fatalf("%d names of %d", len(resp.Names), resp.Count)
		}
		again, ok := encodeResponse(resp)
		if !ok {
			return
		}
		resp2, err := ParseResponse(again)
		if err != nil {
			t.Fatalf("response %+v rebuilt as %x: %v", resp, again, err)
		}
		if !reflect.DeepEqual(resp, resp2) {
			t.Fatalf("response %+v rebuilt parses as %+v", resp, resp2)
		}
	})
}

// FuzzTracker drives a Tracker with an arbitrary session. The input is a
// sequence of frames: a direction byte (even: client, odd: server), a
// 2-byte body length, and a packet body. Each parsed packet goes to the
// Tracker, and after each the test checks that the Tracker never panics,
// stays within its limits, and accounts exactly for what it holds: its
// byte count is the sum of its pending requests' and handles' strings, and
// a completed request is no longer pending.
//
// The seed corpus is in testdata/fuzz/FuzzTracker.
func FuzzTracker(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := NewTracker()
		for len(data) >= 3 {
			client := data[0]%2 == 0
			n := int(binary.BigEndian.Uint16(data[1:3]))
			data = data[3:]
			n = min(n, len(data))
			raw := framed(data[:n])
			data = data[n:]
			if client {
				req, err := ParseRequest(raw)
				if err != nil {
					continue
				}
				got, err := tr.Request(req)
				first, second := req.namesHandles()
				if err == nil && first {
					if h, ok := tr.handles[req.Handle]; !ok || got.Path != h.Path {
						t.Fatalf("request on handle %q got path %q, want that of %+v", req.Handle, got.Path, h)
					}
				}
				if err == nil && second {
					if h, ok := tr.handles[req.Handle2]; !ok || got.Path2 != h.Path {
						t.Fatalf("request on handle %q got path %q, want that of %+v", req.Handle2, got.Path2, h)
					}
				}
				if errors.Is(err, ErrUnknownHandle) {
					if p, ok := tr.pending[req.ID]; ok && reflect.DeepEqual(p, req) {
						t.Fatalf("request %d refused but pending", req.ID)
					}
				}
			} else {
				resp, err := ParseResponse(raw)
				if err != nil {
					continue
				}
				c, err := tr.Response(resp)
				if err == nil && resp.Type != TypeVersion {
					if _, still := tr.pending[resp.ID]; still {
						t.Fatalf("request %d completed but still pending", resp.ID)
					}
					if c.Request.ID != resp.ID {
						t.Fatalf("response %d completed request %d", resp.ID, c.Request.ID)
					}
				}
			}
			checkTracker(t, tr)
		}
	})
}

func checkTracker(t *testing.T, tr *Tracker) {
	t.Helper()
	if len(tr.pending) > MaxPending || len(tr.handles) > MaxHandles || tr.stored > MaxTrackedBytes {
		t.Fatalf("over the limits: %d pending, %d handles, %d bytes", len(tr.pending), len(tr.handles), tr.stored)
	}
	sum := 0
	for id, req := range tr.pending {
		if req.ID != id {
			t.Fatalf("request %d pending under id %d", req.ID, id)
		}
		sum += requestSize(req)
	}
	for handle, h := range tr.handles {
		if h.Handle != handle {
			t.Fatalf("handle %q stored under %q", h.Handle, handle)
		}
		sum += len(h.Handle) + len(h.Path)
	}
	for handle := range tr.closing {
		if _, ok := tr.handles[handle]; !ok {
			t.Fatalf("closing handle %q is not open", handle)
		}
	}
	for id := range tr.internal {
		if _, ok := tr.pending[id]; !ok {
			t.Fatalf("internal request %d is not pending", id)
		}
	}
	if sum != tr.stored {
		t.Fatalf("stored %d bytes, holds %d", tr.stored, sum)
	}
}
