package main

import (
	"bytes"
	"fmt"
	"net/http"
)

// gRPC-Web request bodies (binary, one length-prefixed message): SayHi{name:"ada"} and
// List{pt:{value:1}}.
var (
	grpcWebSayHi       = []byte{0, 0, 0, 0, 5, 0x0a, 3, 'a', 'd', 'a'}
	grpcWebListRequest = []byte{0, 0, 0, 0, 4, 0x0a, 2, 0x10, 1}
	grpcWebHeaders     = map[string]string{"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1"}
)

// grpcWebUnary: SayHi calls per second from Concurrency clients over HTTP/1.1 keep-alive
// connections, as a browser's grpc-web client makes them.
func grpcWebUnary(cfg Config, t Target, _ bool) (Metrics, error) {
	calls, _, seconds, err := postLoop(cfg, "http://"+t.HTTP+"/hello.UserService/SayHi", grpcWebSayHi,
		grpcWebHeaders, func(resp *http.Response, body []byte) (int, error) { return checkGRPCWeb(resp, body, 1) })
	if err != nil {
		return nil, err
	}
	return Metrics{"req_per_s": float64(calls) / seconds}, nil
}

// grpcWebList: List's response messages per second (the server's --list-count each call).
func grpcWebList(cfg Config, t Target, _ bool) (Metrics, error) {
	_, messages, seconds, err := postLoop(cfg, "http://"+t.HTTP+"/proto.StreamService/List", grpcWebListRequest,
		grpcWebHeaders, func(resp *http.Response, body []byte) (int, error) { return checkGRPCWeb(resp, body, 0) })
	if err != nil {
		return nil, err
	}
	return Metrics{"msg_per_s": float64(messages) / seconds}, nil
}

// checkGRPCWeb: a gRPC-Web answer is 200 with message frames (exactly `messages` of them when not
// 0, at least one) and last a trailer frame saying grpc-status 0; the number of message frames.
func checkGRPCWeb(resp *http.Response, b []byte, messages int) (int, error) {
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if s := resp.Header.Get("Grpc-Status"); s != "" {
		return 0, fmt.Errorf("trailers-only answer, grpc-status %s %s", s, resp.Header.Get("Grpc-Message"))
	}
	count := 0
	for len(b) >= 5 {
		flags, n := b[0], int(b[1])<<24|int(b[2])<<16|int(b[3])<<8|int(b[4])
		if len(b) < 5+n {
			return 0, fmt.Errorf("a frame cut short")
		}
		frame := b[5 : 5+n]
		b = b[5+n:]
		if flags&0x80 == 0 {
			count++
			continue
		}
		switch {
		case len(b) != 0:
			return 0, fmt.Errorf("bytes after the trailer frame")
		case !bytes.Contains(frame, []byte("grpc-status:0")) && !bytes.Contains(frame, []byte("grpc-status: 0")):
			return 0, fmt.Errorf("trailers %q", frame)
		case count == 0 || (messages != 0 && count != messages):
			return 0, fmt.Errorf("%d messages", count)
		}
		return count, nil
	}
	return 0, fmt.Errorf("no trailer frame")
}
