// wsproxy: what a Go user would write instead of Sluice: gorilla/websocket in
// front of a grpc-go client, one protojson text frame per message, on the same
// paths and with the same control frames as Sluice, plus HTTP JSON unary.
//
//	wsproxy --listen 127.0.0.1:9080 --backend 127.0.0.1:9888
//
// WebSocket: /proto.StreamService/List and /proto.StreamService/Route.
// The client sends one JSON message per text frame and {"$end":true} to
// half-close; the proxy sends one JSON message per response frame and ends
// with {"$end":{"code":0}} (or the error status), then Close.
// HTTP: POST /hello.UserService/SayHi, JSON in, JSON out.
//
// A straightforward, idiomatic implementation: one shared grpc.ClientConn, a
// goroutine per direction per session, protojson for the JSON mapping with
// default values emitted (as Sluice does).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	hellopb "sluicebench/pb/hellopb"
	streampb "sluicebench/pb/streampb"
)

var (
	marshal   = protojson.MarshalOptions{EmitUnpopulated: true}
	unmarshal = protojson.UnmarshalOptions{}
	upgrader  = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
)

// session serialises writes to one WebSocket (gorilla allows one writer at a time).
type session struct {
	conn *websocket.Conn
	mu   sync.Mutex
}

func (s *session) write(data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn.WriteMessage(websocket.TextMessage, data)
}

// finish sends the final $end frame for err (nil = OK) and a Close frame.
func (s *session) finish(err error) {
	st := status.Convert(err)
	end := map[string]interface{}{"code": int(st.Code())}
	if st.Message() != "" {
		end["message"] = st.Message()
	}
	frame, _ := json.Marshal(map[string]interface{}{"$end": end})
	_ = s.write(frame)
	closeCode := websocket.CloseNormalClosure
	if st.Code() != 0 {
		closeCode = 4000 + int(st.Code())
	}
	s.mu.Lock()
	_ = s.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(closeCode, ""))
	s.mu.Unlock()
}

// control reports whether frame is a control frame ({"$...": ...}) and, if so, its keys.
func control(frame []byte) (map[string]json.RawMessage, bool) {
	if !bytes.HasPrefix(bytes.TrimLeft(frame, " \t\r\n"), []byte(`{"$`)) {
		return nil, false
	}
	var keys map[string]json.RawMessage
	if json.Unmarshal(frame, &keys) != nil {
		return nil, false
	}
	return keys, true
}

type proxy struct {
	streams streampb.StreamServiceClient
	users   hellopb.UserServiceClient
}

// route: bidirectional streaming, one goroutine reads the WebSocket and sends
// to gRPC, the handler goroutine receives from gRPC and writes the WebSocket.
func (p *proxy) route(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	s := &session{conn: conn}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stream, err := p.streams.Route(ctx)
	if err != nil {
		s.finish(err)
		return
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		halfClosed := false
		for {
			_, frame, err := conn.ReadMessage()
			if err != nil { // Close or vanished peer: half-close
				if !halfClosed {
					_ = stream.CloseSend()
				}
				return
			}
			if halfClosed {
				continue
			}
			if keys, ok := control(frame); ok {
				if _, end := keys["$end"]; end {
					_ = stream.CloseSend()
					halfClosed = true
				} else if _, c := keys["$cancel"]; c {
					cancel()
					halfClosed = true
				}
				continue
			}
			req := &streampb.StreamRequest{}
			if err := unmarshal.Unmarshal(frame, req); err != nil {
				cancel()
				halfClosed = true
				continue
			}
			if err := stream.Send(req); err != nil {
				halfClosed = true // the call is over; Recv reports why
			}
		}
	}()
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			s.finish(nil)
			break
		}
		if err != nil {
			s.finish(err)
			break
		}
		frame, _ := marshal.Marshal(resp)
		if err := s.write(frame); err != nil {
			cancel()
			break
		}
	}
	waitForClose(readerDone)
}

// list: server streaming, the first message frame is the request.
func (p *proxy) list(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	s := &session{conn: conn}
	var req streampb.StreamRequest
	for {
		_, frame, err := conn.ReadMessage()
		if err != nil {
			return
		}
		if _, ok := control(frame); ok {
			continue
		}
		if err := unmarshal.Unmarshal(frame, &req); err != nil {
			s.finish(status.Error(3, err.Error()))
			return
		}
		break
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() { // a vanished client cancels the call; $end/Close frames end nothing here
		for {
			if _, _, err := conn.NextReader(); err != nil {
				cancel()
				return
			}
		}
	}()
	stream, err := p.streams.List(ctx, &req)
	if err != nil {
		s.finish(err)
		return
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			s.finish(nil)
			break
		}
		if err != nil {
			s.finish(err)
			break
		}
		frame, _ := marshal.Marshal(resp)
		if err := s.write(frame); err != nil {
			return
		}
	}
	waitForClose(ctx.Done()) // the reader goroutine sees the client's Close
}

// waitForClose gives the client up to 2 s to answer our Close, so the last frames are not reset away.
func waitForClose(done <-chan struct{}) {
	timer := time.NewTimer(2 * time.Second)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
	}
}

func (p *proxy) sayHi(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	req := &hellopb.Request{}
	if err := unmarshal.Unmarshal(body, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := p.users.SayHi(r.Context(), req)
	if err != nil {
		http.Error(w, status.Convert(err).Message(), http.StatusBadGateway)
		return
	}
	out, _ := marshal.Marshal(resp)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9080", "HTTP/WebSocket address (port 0 picks a free one, printed on stderr)")
	backend := flag.String("backend", "127.0.0.1:9888", "gRPC server address")
	flag.Parse()

	cc, err := grpc.Dial(*backend, grpc.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	p := &proxy{streams: streampb.NewStreamServiceClient(cc), users: hellopb.NewUserServiceClient(cc)}
	mux := http.NewServeMux()
	mux.HandleFunc("/proto.StreamService/Route", p.route)
	mux.HandleFunc("/proto.StreamService/List", p.list)
	mux.HandleFunc("/hello.UserService/SayHi", p.sayHi)

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "wsproxy.address=%s\n", lis.Addr())
	log.Fatal(http.Serve(lis, mux))
}
