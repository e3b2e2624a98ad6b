package postgres_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/interlock-dev/interlock/policy"
)

// What upstream sends and the relay passes on unchanged reaches the client
// as the bytes upstream sent: here a notice whose fields come in an order
// pgproto3 would not write them in (a field it does not know first), which
// decoding and encoding it again would reorder.
func TestUpstreamMessagesRelayedAsSent(t *testing.T) {
	notice := []byte{'N', 0, 0, 0, 0}
	for _, f := range []struct {
		code  byte
		value string
	}{{'X', "a field pgproto3 does not know"}, {'S', "NOTICE"}, {'C', "00000"}, {'M', "relayed as sent"}} {
		notice = append(append(append(notice, f.code), f.value...), 0)
	}
	notice = append(notice, 0)
	binary.BigEndian.PutUint32(notice[1:], uint32(len(notice)-1))
	if bytes.Equal(decodeEncode(t, notice), notice) {
		t.Fatal("the notice encodes back to the same bytes: it cannot show whether the relay re-encodes")
	}

	pol, err := policy.Compile(policy.Config{Default: "allow"}, policy.Env{Targets: map[string]string{"shop": "postgres"}})
	if err != nil {
		t.Fatal(err)
	}
	h := fakeTargetHandler(t, pol, nil)
	client, server := net.Pipe()
	defer client.Close()
	s := pipedSession("frames", server, func() net.Conn {
		a, b := net.Pipe()
		go noticingUpstream(b, notice)
		return a
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, s); server.Close() }()

	client.SetDeadline(time.Now().Add(10 * time.Second))
	startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "agent", "database": "shop"}}).Encode(nil)
	client.Write(startup)
	r := bufio.NewReader(client)
	readUntil(t, r, 'Z') // logged in
	q, _ := (&pgproto3.Query{String: "SELECT 1"}).Encode(nil)
	client.Write(q)
	var got []byte
	for _, f := range readUntil(t, r, 'Z') {
		if f[0] == 'N' {
			got = f
		}
	}
	if !bytes.Equal(got, notice) {
		t.Errorf("the client got the notice as\n%q\nupstream sent\n%q", got, notice)
	}
	client.Close()
	<-done
}

// noticingUpstream logs the relay in and answers every query with notice,
// as given, before its (empty) result.
func noticingUpstream(conn net.Conn, notice []byte) {
	defer conn.Close()
	be := pgproto3.NewBackend(conn, conn)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.Query); !ok {
			continue
		}
		if _, err := conn.Write(notice); err != nil {
			return
		}
		be.Send(&pgproto3.EmptyQueryResponse{})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		if be.Flush() != nil {
			return
		}
	}
}

// readUntil reads whole messages, as bytes, up to and including one of
// type last.
func readUntil(t *testing.T, r *bufio.Reader, last byte) [][]byte {
	t.Helper()
	var frames [][]byte
	for {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(r, hdr); err != nil {
			t.Fatalf("reading from the gateway: %v", err)
		}
		f := make([]byte, 1+binary.BigEndian.Uint32(hdr[1:]))
		copy(f, hdr)
		if _, err := io.ReadFull(r, f[5:]); err != nil {
			t.Fatalf("reading from the gateway: %v", err)
		}
		frames = append(frames, f)
		if f[0] == last {
			return frames
		}
	}
}

// decodeEncode is a notice's frame decoded by pgproto3 and encoded again.
func decodeEncode(t *testing.T, frame []byte) []byte {
	t.Helper()
	var m pgproto3.NoticeResponse
	if err := m.Decode(frame[5:]); err != nil {
		t.Fatal(err)
	}
	out, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
