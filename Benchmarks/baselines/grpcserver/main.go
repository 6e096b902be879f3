// grpcserver: the seed's services on plain grpc-go, the baseline for native gRPC.
//
//	grpcserver --port 9888 --list-count 100000
//
// Same semantics as Sluice with --pace-ms 0: List sends --list-count responses
// (value = request.value + n, same name), Record reads until EOF and answers
// {"gRPC Stream Server: Record", 1}, Route answers every request with
// {"gRPC Stream Server: Route", n} (n from 0), SayHi answers
// "hi <name>---<local yyyy-MM-dd HH:mm:ss>". No sleeps.
//
// --reflection also registers grpc-go's server reflection (v1alpha, as Debian's grpc-go has it)
// and health service, for the upstream tests (Tests/Interop/test_upstream.py); the benchmarks run
// without them.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	hellopb "sluicebench/pb/hellopb"
	streampb "sluicebench/pb/streampb"
)

type streamServer struct {
	streampb.UnimplementedStreamServiceServer
	listCount int
}

func (s *streamServer) List(req *streampb.StreamRequest, stream streampb.StreamService_ListServer) error {
	name, value := req.GetPt().GetName(), req.GetPt().GetValue()
	for n := 0; n < s.listCount; n++ {
		err := stream.Send(&streampb.StreamResponse{Pt: &streampb.StreamPoint{Name: name, Value: value + int32(n)}})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *streamServer) Record(stream streampb.StreamService_RecordServer) error {
	for {
		_, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&streampb.StreamResponse{Pt: &streampb.StreamPoint{Name: "gRPC Stream Server: Record", Value: 1}})
		}
		if err != nil {
			return err
		}
	}
}

func (s *streamServer) Route(stream streampb.StreamService_RouteServer) error {
	for n := int32(0); ; n++ {
		_, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&streampb.StreamResponse{Pt: &streampb.StreamPoint{Name: "gRPC Stream Server: Route", Value: n}}); err != nil {
			return err
		}
	}
}

type userServer struct {
	hellopb.UnimplementedUserServiceServer
}

func (userServer) SayHi(_ context.Context, req *hellopb.Request) (*hellopb.Response, error) {
	return &hellopb.Response{Result: "hi " + req.GetName() + "---" + time.Now().Format("2006-01-02 15:04:05")}, nil
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to bind")
	port := flag.Int("port", 9888, "port (0 picks a free one, printed on stderr)")
	listCount := flag.Int("list-count", 7, "responses per List")
	withReflection := flag.Bool("reflection", false, "also serve server reflection and health")
	flag.Parse()

	lis, err := net.Listen("tcp", net.JoinHostPort(*host, fmt.Sprint(*port)))
	if err != nil {
		log.Fatal(err)
	}
	server := grpc.NewServer()
	streampb.RegisterStreamServiceServer(server, &streamServer{listCount: *listCount})
	hellopb.RegisterUserServiceServer(server, userServer{})
	if *withReflection {
		reflection.Register(server)
		healthpb.RegisterHealthServer(server, health.NewServer())
	}
	fmt.Fprintf(os.Stderr, "grpcserver.address=%s\n", lis.Addr())

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-signals; server.Stop() }()
	if err := server.Serve(lis); err != nil {
		log.Fatal(err)
	}
}
