package main

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The multiplexed WebSocket session (README: "Many RPCs on one WebSocket"): every frame is
// {"id":N,...}. muxConn takes frames from many goroutines and writes what is pending in one
// write, as a client of one socket for many streams would (gorilla writes one frame per call, so
// the frames are built here: masked with a zero key, which RFC 6455 allows); it reads on one
// goroutine, handing each stream's frames to its channel.
type muxConn struct {
	conn    *websocket.Conn
	out     chan []byte
	failed  chan error
	done    chan struct{} // closed when readLoop returns
	streams sync.Map      // id (int) -> chan muxFrame
}

type muxFrame struct {
	kind string // "message", "end", "credit", "headers"
	err  error  // an end that is not OK
}

func dialMux(t Target) (*muxConn, error) {
	conn, err := dial(t, "/", dialer)
	if err != nil {
		return nil, err
	}
	m := &muxConn{conn: conn, out: make(chan []byte, 4096), failed: make(chan error, 1), done: make(chan struct{})}
	go m.readLoop()
	go m.writeLoop()
	return m, nil
}

// writeLoop writes each frame and every frame pending behind it in one write.
func (m *muxConn) writeLoop() {
	var buf []byte
	for frame := range m.out {
		buf = appendClientFrame(buf[:0], frame)
	pending:
		for {
			select {
			case more, ok := <-m.out:
				if !ok {
					break pending
				}
				buf = appendClientFrame(buf, more)
			default:
				break pending
			}
		}
		if _, err := m.conn.UnderlyingConn().Write(buf); err != nil {
			m.failed <- err
			return
		}
	}
}

// appendClientFrame appends one text frame, masked with the key 0 (so the payload is unchanged).
func appendClientFrame(buf, payload []byte) []byte {
	buf = append(buf, 0x81)
	switch n := len(payload); {
	case n < 126:
		buf = append(buf, 0x80|byte(n))
	case n < 65536:
		buf = append(buf, 0x80|126, byte(n>>8), byte(n))
	default:
		buf = append(buf, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	buf = append(buf, 0, 0, 0, 0)
	return append(buf, payload...)
}

// open registers stream id; its channel holds `capacity` frames (more are dropped: a stream
// nobody reads).
func (m *muxConn) open(id, capacity int) chan muxFrame {
	ch := make(chan muxFrame, capacity)
	m.streams.Store(id, ch)
	return ch
}

func (m *muxConn) send(frame []byte) error {
	select {
	case err := <-m.failed:
		m.failed <- err
		return err
	case m.out <- append([]byte(nil), frame...):
		return nil
	}
}

// close ends the writer, sends Close and waits (briefly) for the reader to see the server's,
// then drops the connection. (closeSession would read beside readLoop: gorilla allows one reader.)
func (m *muxConn) close() {
	close(m.out)
	time.Sleep(10 * time.Millisecond)
	_ = m.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	select {
	case <-m.done:
	case <-time.After(2 * time.Second):
	}
	m.conn.Close()
}

// readLoop parses {"id":N,"<kind>":...} by hand: the id's digits, then the key.
func (m *muxConn) readLoop() {
	defer close(m.done)
	var buf bytes.Buffer
	for {
		_, r, err := m.conn.NextReader()
		if err != nil {
			m.streams.Range(func(_, ch any) bool {
				select {
				case ch.(chan muxFrame) <- muxFrame{kind: "end", err: fmt.Errorf("connection: %v", err)}:
				default: // a stream nobody reads any more
				}
				return true
			})
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			continue
		}
		b := buf.Bytes()
		if !bytes.HasPrefix(b, []byte(`{"id":`)) {
			continue // a pong
		}
		rest := b[len(`{"id":`):]
		comma := bytes.IndexByte(rest, ',')
		if comma < 0 {
			continue
		}
		id, err := strconv.Atoi(string(rest[:comma]))
		if err != nil {
			continue
		}
		rest = rest[comma+2:] // past `,"`
		quote := bytes.IndexByte(rest, '"')
		if quote < 0 {
			continue
		}
		frame := muxFrame{kind: string(rest[:quote])}
		if frame.kind == "end" && !bytes.Contains(rest, []byte(`"code":0`)) {
			frame.err = fmt.Errorf("stream %d failed: %s", id, b)
		}
		if ch, ok := m.streams.Load(id); ok {
			select {
			case ch.(chan muxFrame) <- frame:
			default: // an idle stream nobody reads (its end after the Close)
			}
			if frame.kind == "end" {
				m.streams.Delete(id)
			}
		}
	}
}

// routeFrame is {"id":id,"message":{"pt":{"name":"bench","value":i}}} built into buf.
func routeFrame(buf []byte, id, i int) []byte {
	buf = append(buf[:0], `{"id":`...)
	buf = strconv.AppendInt(buf, int64(id), 10)
	buf = append(buf, `,"message":{"pt":{"name":"bench","value":`...)
	buf = strconv.AppendInt(buf, int64(i), 10)
	return append(buf, "}}}"...)
}

func startFrame(id int) []byte {
	return []byte(`{"id":` + strconv.Itoa(id) + `,"start":"/proto.StreamService/Route"}`)
}

func endStreamFrame(id int) []byte {
	return []byte(`{"id":` + strconv.Itoa(id) + `,"end":true}`)
}

// muxPingPong sends n messages on stream id, one at a time, each after the previous answer; then
// end, and waits for the stream's end.
func muxPingPong(m *muxConn, id, n int, ch chan muxFrame) error {
	buf := make([]byte, 0, 96)
	for i := 0; i < n; i++ {
		if err := m.send(routeFrame(buf, id, i)); err != nil {
			return err
		}
		if err := nextMessage(ch, id); err != nil {
			return fmt.Errorf("after %d of %d: %v", i, n, err)
		}
	}
	return endStream(m, id, ch)
}

// nextMessage waits for the stream's next message (credit grants pass by).
func nextMessage(ch chan muxFrame, id int) error {
	for f := range ch {
		if f.kind == "message" {
			return nil
		}
		if f.kind == "end" {
			return fmt.Errorf("stream %d ended: %v", id, f.err)
		}
	}
	return fmt.Errorf("stream %d: connection closed", id)
}

func endStream(m *muxConn, id int, ch chan muxFrame) error {
	if err := m.send(endStreamFrame(id)); err != nil {
		return err
	}
	for f := range ch {
		if f.kind == "end" {
			return f.err
		}
	}
	return nil
}

// muxRouteStreams: Streams Route streams of one multiplexed session, each ping-pong, N in total.
func muxRouteStreams(cfg Config, t Target) (Metrics, error) {
	m, err := dialMux(t)
	if err != nil {
		return nil, err
	}
	defer m.close()
	per := cfg.N / cfg.Streams
	chans := make([]chan muxFrame, cfg.Streams)
	for i := range chans {
		chans[i] = m.open(i, 64)
		if err := m.send(startFrame(i)); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	errs := make(chan error, cfg.Streams)
	for i, ch := range chans {
		go func(id int, ch chan muxFrame) { errs <- muxPingPong(m, id, per, ch) }(i, ch)
	}
	var firstErr error
	for range chans {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return Metrics{"msg_per_s": float64(per*cfg.Streams) / time.Since(start).Seconds()}, nil
}

// muxLatency: one Route stream, Rate messages/s for Duration (sent on schedule, as wsLatency does),
// beside MuxOpen idle Route streams of the same session; round trip from send to response.
func muxLatency(cfg Config, t Target) (Metrics, error) {
	m, err := dialMux(t)
	if err != nil {
		return nil, err
	}
	defer m.close()
	for i := 1; i <= t.MuxOpen; i++ {
		m.open(i, 4)
		if err := m.send(startFrame(i)); err != nil {
			return nil, err
		}
	}
	n := int(cfg.Duration.Seconds() * float64(cfg.Rate))
	ch := m.open(0, n+64)
	if err := m.send(startFrame(0)); err != nil {
		return nil, err
	}
	sent := make(chan time.Time, n)
	sendErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 0, 96)
		sendErr <- sendPaced(n, cfg.Rate, sent, func(i int) error { return m.send(routeFrame(buf, 0, i)) })
	}()
	rtts := make([]float64, 0, n)
	for len(rtts) < n {
		if err := nextMessage(ch, 0); err != nil {
			return nil, err
		}
		rtts = append(rtts, float64(time.Since(<-sent).Nanoseconds())/1e3)
	}
	if err := <-sendErr; err != nil {
		return nil, err
	}
	if err := endStream(m, 0, ch); err != nil {
		return nil, err
	}
	return latencyMetrics(rtts), nil
}
