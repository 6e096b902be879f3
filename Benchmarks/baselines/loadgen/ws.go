package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// idleSend: ws-idle sends one message per session (so each has a live RPC); --idle-send=false
// only opens the WebSockets.
var idleSend = true

var dialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 4096}

func dial(t Target, path string, d *websocket.Dialer) (*websocket.Conn, error) {
	conn, resp, err := d.Dial("ws://"+t.HTTP+path, http.Header{})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%s: %v (HTTP %d)", path, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return conn, nil
}

// messageFrame is {"pt":{"name":"bench","value":i}} built into buf.
func messageFrame(buf []byte, i int) []byte {
	buf = append(buf[:0], `{"pt":{"name":"bench","value":`...)
	buf = strconv.AppendInt(buf, int64(i), 10)
	return append(buf, "}}"...)
}

var endFrame = []byte(`{"$end":true}`)

// frameKind reads the next text frame into buf: "msg" for a message, "end" for
// $end (with an error if its code is not 0), "ctl" for another control frame.
func readFrame(conn *websocket.Conn, buf *bytes.Buffer) (string, error) {
	_, r, err := conn.NextReader()
	if err != nil {
		return "", err
	}
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		return "", err
	}
	b := buf.Bytes()
	if bytes.HasPrefix(b, []byte(`{"$`)) {
		if bytes.HasPrefix(b, []byte(`{"$end"`)) {
			if !bytes.Contains(b, []byte(`"code":0`)) && !bytes.Contains(b, []byte(`"code": 0`)) {
				return "end", fmt.Errorf("RPC failed: %s", b)
			}
			return "end", nil
		}
		return "ctl", nil
	}
	return "msg", nil
}

// closeSession sends Close and waits (briefly) for the server's, then drops the connection.
func closeSession(conn *websocket.Conn) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		if _, _, err := conn.NextReader(); err != nil {
			break
		}
	}
	conn.Close()
}

// wsRouteSession sends n messages (window in flight), then $end, and counts responses until $end.
func wsRouteSession(conn *websocket.Conn, n, window int) (int, error) {
	slots := make(chan struct{}, window)
	stop := make(chan struct{})
	sendErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 0, 64)
		for i := 0; i < n; i++ {
			select {
			case slots <- struct{}{}:
			case <-stop:
				sendErr <- nil
				return
			}
			if err := conn.WriteMessage(websocket.TextMessage, messageFrame(buf, i)); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- conn.WriteMessage(websocket.TextMessage, endFrame)
	}()
	var buf bytes.Buffer
	count := 0
	var err error
	for {
		var kind string
		kind, err = readFrame(conn, &buf)
		if err != nil || kind == "end" {
			break
		}
		if kind == "msg" {
			count++
			<-slots
		}
	}
	close(stop)
	if serr := <-sendErr; err == nil {
		err = serr
	}
	if err == nil && count != n {
		err = fmt.Errorf("received %d of %d responses", count, n)
	}
	return count, err
}

func wsRoute(cfg Config, t Target, _ bool) (Metrics, error) {
	conn, err := dial(t, "/proto.StreamService/Route", dialer)
	if err != nil {
		return nil, err
	}
	defer closeSession(conn)
	start := time.Now()
	n, err := wsRouteSession(conn, cfg.N, cfg.Window)
	if err != nil {
		return nil, err
	}
	return Metrics{"msg_per_s": float64(n) / time.Since(start).Seconds()}, nil
}

func wsList(cfg Config, t Target, warmup bool) (Metrics, error) {
	conn, err := dial(t, "/proto.StreamService/List", dialer)
	if err != nil {
		return nil, err
	}
	defer closeSession(conn)
	start := time.Now()
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"pt":{"name":"bench","value":10}}`)); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	count := 0
	for {
		kind, err := readFrame(conn, &buf)
		if err != nil {
			return nil, err
		}
		if kind == "end" {
			break
		}
		if kind == "msg" {
			count++
		}
	}
	elapsed := time.Since(start).Seconds()
	if !warmup && count != cfg.N {
		return nil, fmt.Errorf("received %d responses, want %d (server --list-count)", count, cfg.N)
	}
	return Metrics{"msg_per_s": float64(count) / elapsed}, nil
}

// wsRouteStreams: Streams WebSocket sessions (dialled before the clock starts), each ping-pong, N in total;
// for a mux target, Streams streams of one multiplexed session instead.
func wsRouteStreams(cfg Config, t Target, _ bool) (Metrics, error) {
	if t.Mux {
		return muxRouteStreams(cfg, t)
	}
	per := cfg.N / cfg.Streams
	conns := make([]*websocket.Conn, cfg.Streams)
	for i := range conns {
		c, err := dial(t, "/proto.StreamService/Route", dialer)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return nil, err
		}
		conns[i] = c
	}
	start := time.Now()
	errs := make(chan error, cfg.Streams)
	for _, c := range conns {
		go func(c *websocket.Conn) {
			_, err := wsRouteSession(c, per, 1)
			errs <- err
		}(c)
	}
	var firstErr error
	for range conns {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	elapsed := time.Since(start).Seconds()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func(c *websocket.Conn) { defer wg.Done(); closeSession(c) }(c)
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return Metrics{"msg_per_s": float64(per*cfg.Streams) / elapsed}, nil
}

// wsLatency: one Route session, Rate messages/s for Duration; round trip from send to response.
// For a mux target, one stream of a multiplexed session with MuxOpen idle Route streams beside it.
func wsLatency(cfg Config, t Target, _ bool) (Metrics, error) {
	if t.Mux {
		return muxLatency(cfg, t)
	}
	conn, err := dial(t, "/proto.StreamService/Route", dialer)
	if err != nil {
		return nil, err
	}
	defer closeSession(conn)
	n := int(cfg.Duration.Seconds() * float64(cfg.Rate))
	sent := make(chan time.Time, n)
	sendErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 0, 64)
		err := sendPaced(n, cfg.Rate, sent, func(i int) error {
			return conn.WriteMessage(websocket.TextMessage, messageFrame(buf, i))
		})
		if err != nil {
			sendErr <- err
			return
		}
		sendErr <- conn.WriteMessage(websocket.TextMessage, endFrame)
	}()
	var buf bytes.Buffer
	rtts := make([]float64, 0, n)
	for {
		kind, err := readFrame(conn, &buf)
		if err != nil {
			return nil, err
		}
		if kind == "end" {
			break
		}
		if kind == "msg" {
			rtts = append(rtts, float64(time.Since(<-sent).Nanoseconds())/1e3)
		}
	}
	if err := <-sendErr; err != nil {
		return nil, err
	}
	if len(rtts) != n {
		return nil, fmt.Errorf("received %d of %d", len(rtts), n)
	}
	return latencyMetrics(rtts), nil
}

// wsIdle opens Sessions Route sessions, sends one message on each and reads its
// answer, then (all open and idle) reads the servers' RSS.
func wsIdle(cfg Config, t Target, _ bool) (Metrics, error) {
	if len(t.Pids) == 0 {
		return nil, fmt.Errorf("ws-idle needs the server pid(s)")
	}
	before := rssKB(t.Pids[0])
	conns := make([]*websocket.Conn, cfg.Sessions)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		time.Sleep(2 * time.Second) // let the server tear the sessions down before the next target
	}()
	start := time.Now()
	jobs := make(chan int)
	errs := make(chan error, cfg.Sessions)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for i := range jobs {
				// spread source addresses over 127.0.0.2-33 so 10,000 sessions per target
				// never run short of ephemeral ports
				local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%32))}
				d := *dialer
				d.ReadBufferSize, d.WriteBufferSize = 1024, 1024
				d.NetDialContext = (&net.Dialer{LocalAddr: local, Timeout: 10 * time.Second}).DialContext
				c, err := dial(t, "/proto.StreamService/Route", &d)
				if err != nil {
					errs <- err
					continue
				}
				conns[i] = c
				if !idleSend {
					continue
				}
				if err := c.WriteMessage(websocket.TextMessage, messageFrame(nil, i)); err != nil {
					errs <- err
					continue
				}
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				kind, err := readFrame(c, &buf)
				if err == nil && kind != "msg" {
					err = fmt.Errorf("expected a response, got %s", buf.Bytes())
				}
				if err != nil {
					errs <- err
				}
				_ = c.SetReadDeadline(time.Time{})
			}
		}()
	}
	for i := 0; i < cfg.Sessions; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	opened := time.Since(start).Seconds()
	close(errs)
	failed, firstErr := 0, error(nil)
	for err := range errs {
		if firstErr == nil {
			firstErr = err
		}
		failed++
	}
	if failed > 0 {
		return nil, fmt.Errorf("%d of %d sessions failed, first: %v", failed, cfg.Sessions, firstErr)
	}
	time.Sleep(2 * time.Second) // idle
	m := Metrics{"open_s": opened, "rss_before_mb": before / 1024}
	total := 0.0
	for i, pid := range t.Pids {
		kb := rssKB(pid)
		total += kb
		if i == 0 {
			m["rss_mb"] = kb / 1024
			m["kb_per_session"] = (kb - before) / float64(cfg.Sessions)
		}
		m[fmt.Sprintf("rss_pid%d_mb", i)] = kb / 1024
	}
	m["rss_all_pids_mb"] = total / 1024
	return m, nil
}
