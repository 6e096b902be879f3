package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	hellopb "sluicebench/pb/hellopb"
	streampb "sluicebench/pb/streampb"
)

var (
	grpcWindow int    // --grpc-window
	grpcCA     string // --grpc-ca: TLS to the target, trusting this CA
	connsMu    sync.Mutex
	conns      = map[string]*grpc.ClientConn{}
)

// conn is one grpc-go ClientConn (one HTTP/2 connection) per target, reused by every run.
func conn(t Target) (*grpc.ClientConn, error) {
	connsMu.Lock()
	defer connsMu.Unlock()
	if c, ok := conns[t.GRPC]; ok {
		return c, nil
	}
	options := []grpc.DialOption{grpc.WithInsecure(), grpc.WithBlock()}
	if grpcCA != "" {
		creds, err := credentials.NewClientTLSFromFile(grpcCA, "")
		if err != nil {
			return nil, err
		}
		options = []grpc.DialOption{grpc.WithTransportCredentials(creds), grpc.WithBlock()}
	}
	if grpcWindow > 0 {
		// Static flow-control windows turn off grpc-go's BDP estimation and with it its PING
		// frames: swift-nio-http2 allows 200 PING/SETTINGS frames per 30 s on a connection and then
		// answers GOAWAY ENHANCE_YOUR_CALM (not configurable through grpc-swift-nio-transport).
		options = append(options, grpc.WithInitialWindowSize(int32(grpcWindow)), grpc.WithInitialConnWindowSize(int32(grpcWindow)))
	}
	c, err := grpc.Dial(t.GRPC, options...)
	if err != nil {
		return nil, err
	}
	conns[t.GRPC] = c
	return c, nil
}

func request(i int) *streampb.StreamRequest {
	return &streampb.StreamRequest{Pt: &streampb.StreamPoint{Name: "bench", Value: int32(i)}}
}

// grpcRoute: N messages on one bidirectional stream, at most Window in flight.
func grpcRoute(cfg Config, t Target, _ bool) (Metrics, error) {
	c, err := conn(t)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	n, err := routeStream(c, cfg.N, cfg.Window)
	if err != nil {
		return nil, err
	}
	return Metrics{"msg_per_s": float64(n) / time.Since(start).Seconds()}, nil
}

// grpcRecord: N messages on one client-streaming Record call, sent as fast as flow control lets
// them go, then its one response.
func grpcRecord(cfg Config, t Target, _ bool) (Metrics, error) {
	c, err := conn(t)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	stream, err := streampb.NewStreamServiceClient(c).Record(ctx)
	if err != nil {
		return nil, err
	}
	for i := 0; i < cfg.N; i++ {
		if err := stream.Send(request(i)); err != nil {
			return nil, fmt.Errorf("send %d: %v", i, err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	if resp.GetPt().GetName() != "gRPC Stream Server: Record" {
		return nil, fmt.Errorf("unexpected response %v", resp)
	}
	return Metrics{"msg_per_s": float64(cfg.N) / time.Since(start).Seconds()}, nil
}

// routeStream sends n requests with at most window unanswered (window 0: all of them, as fast as
// flow control lets them go, while the responses are read) and returns the responses counted.
func routeStream(c *grpc.ClientConn, n, window int) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stream, err := streampb.NewStreamServiceClient(c).Route(ctx)
	if err != nil {
		return 0, err
	}
	var slots chan struct{}
	if window > 0 {
		slots = make(chan struct{}, window)
	}
	sendErr := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if slots != nil {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					sendErr <- ctx.Err()
					return
				}
			}
			if err := stream.Send(request(i)); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	count := 0
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			cancel()
			return count, err
		}
		if resp.GetPt().GetValue() != int32(count) {
			cancel()
			return count, fmt.Errorf("response %d has value %d", count, resp.GetPt().GetValue())
		}
		count++
		if slots != nil {
			<-slots
		}
	}
	if err := <-sendErr; err != nil {
		return count, err
	}
	if count != n {
		return count, fmt.Errorf("received %d of %d responses", count, n)
	}
	return count, nil
}

// grpcList: one request, N responses (the server runs with --list-count N).
func grpcList(cfg Config, t Target, warmup bool) (Metrics, error) {
	c, err := conn(t)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	stream, err := streampb.NewStreamServiceClient(c).List(ctx, request(10))
	if err != nil {
		return nil, err
	}
	count := 0
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if resp.GetPt().GetValue() != int32(10+count) {
			return nil, fmt.Errorf("response %d has value %d", count, resp.GetPt().GetValue())
		}
		count++
	}
	elapsed := time.Since(start).Seconds()
	if !warmup && count != cfg.N {
		return nil, fmt.Errorf("received %d responses, want %d (server --list-count)", count, cfg.N)
	}
	return Metrics{"msg_per_s": float64(count) / elapsed}, nil
}

// grpcUnary: Concurrency goroutines calling SayHi back to back for Duration, over one connection.
func grpcUnary(cfg Config, t Target, _ bool) (Metrics, error) {
	c, err := conn(t)
	if err != nil {
		return nil, err
	}
	client := hellopb.NewUserServiceClient(c)
	var done, failed int64
	var firstErr atomic.Value
	deadline := time.Now().Add(cfg.Duration)
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < cfg.Concurrency; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &hellopb.Request{Name: "ada"}
			for time.Now().Before(deadline) {
				resp, err := client.SayHi(context.Background(), req)
				if err != nil || len(resp.GetResult()) < 8 {
					atomic.AddInt64(&failed, 1)
					firstErr.CompareAndSwap(nil, fmt.Sprint(err))
					continue
				}
				atomic.AddInt64(&done, 1)
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		return nil, fmt.Errorf("%d calls failed, first: %v", failed, firstErr.Load())
	}
	return Metrics{"req_per_s": float64(done) / time.Since(start).Seconds()}, nil
}

// grpcRouteStreams: Streams concurrent Route streams, each ping-pong (one message in flight), N in total.
func grpcRouteStreams(cfg Config, t Target, _ bool) (Metrics, error) {
	c, err := conn(t)
	if err != nil {
		return nil, err
	}
	per := cfg.N / cfg.Streams
	start := time.Now()
	errs := make(chan error, cfg.Streams)
	for s := 0; s < cfg.Streams; s++ {
		go func() {
			_, err := routeStream(c, per, 1)
			errs <- err
		}()
	}
	for s := 0; s < cfg.Streams; s++ {
		if err := <-errs; err != nil {
			return nil, err
		}
	}
	return Metrics{"msg_per_s": float64(per*cfg.Streams) / time.Since(start).Seconds()}, nil
}

// grpcLatency: one Route stream, Rate messages/s for Duration; round trip from send to response.
func grpcLatency(cfg Config, t Target, _ bool) (Metrics, error) {
	c, err := conn(t)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+time.Minute)
	defer cancel()
	stream, err := streampb.NewStreamServiceClient(c).Route(ctx)
	if err != nil {
		return nil, err
	}
	n := int(cfg.Duration.Seconds() * float64(cfg.Rate))
	sent := make(chan time.Time, n)
	go func() {
		if sendPaced(n, cfg.Rate, sent, func(i int) error { return stream.Send(request(i)) }) == nil {
			stream.CloseSend()
		}
	}()
	rtts := make([]float64, 0, n)
	for {
		_, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		rtts = append(rtts, float64(time.Since(<-sent).Nanoseconds())/1e3)
	}
	if len(rtts) != n {
		return nil, fmt.Errorf("received %d of %d", len(rtts), n)
	}
	return latencyMetrics(rtts), nil
}

func latencyMetrics(rtts []float64) Metrics {
	sort.Float64s(rtts)
	return Metrics{"p50_us": percentile(rtts, 0.50), "p99_us": percentile(rtts, 0.99), "max_us": rtts[len(rtts)-1]}
}
