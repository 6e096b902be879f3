// loadgen: the one load generator of scripts/bench.sh. It drives every target
// the same way and prints one JSON line per scenario on stdout (progress on
// stderr), including its own CPU time (getrusage) and the servers' CPU time
// (/proc/<pid>/stat) per run.
//
//	loadgen run --scenario ws-route --runs 5 --n 100000 \
//	    --target name=sluice,grpc=127.0.0.1:18888,http=127.0.0.1:18080,pids=123 \
//	    --target name=go,grpc=127.0.0.1:19888,http=127.0.0.1:19080,pids=456,457
//	loadgen report --results results.jsonl --json results.json --markdown BENCHMARKS.md
//
// Runs alternate between the targets (run 1 of each, then run 2 ...), after one
// uncounted warm-up run per target, so both see the same machine state.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen run|report [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		runCommand(os.Args[2:])
	case "report":
		reportCommand(os.Args[2:])
	case "ports": // ports N: print N free loopback TCP ports (for scripts/bench.sh)
		freePorts(atoi(os.Args[2]))
	default:
		fmt.Fprintln(os.Stderr, "usage: loadgen run|report [flags]")
		os.Exit(2)
	}
}

type targetList []Target

func (t *targetList) String() string { return fmt.Sprint(*t) }
func (t *targetList) Set(v string) error {
	target := Target{}
	var lastKey string
	for _, part := range strings.Split(v, ",") {
		key, value, ok := strings.Cut(part, "=")
		if !ok && lastKey == "pids" { // pids=1,2,3
			target.Pids = append(target.Pids, atoi(part))
			continue
		}
		lastKey = key
		switch key {
		case "name":
			target.Name = value
		case "grpc":
			target.GRPC = value
		case "http":
			target.HTTP = value
		case "pids":
			target.Pids = append(target.Pids, atoi(value))
		case "mux":
			target.MuxOpen = atoi(value)
			target.Mux = true
		default:
			return fmt.Errorf("unknown target key %q", key)
		}
	}
	*t = append(*t, target)
	return nil
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func runCommand(args []string) {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var targets targetList
	cfg := Config{}
	fs.Var(&targets, "target", "name=..,grpc=host:port,http=host:port,pids=p1,p2 (repeatable)")
	fs.StringVar(&cfg.Scenario, "scenario", "", "scenario: "+strings.Join(scenarioNames(), ", "))
	fs.IntVar(&cfg.Runs, "runs", 5, "counted runs per target")
	fs.IntVar(&cfg.N, "n", 100000, "messages per run (List: must equal the servers' --list-count)")
	fs.IntVar(&cfg.Window, "window", 64, "messages in flight on a pipelined Route stream (0: send all while reading, as a default grpc-go client's pipelined stream does)")
	fs.IntVar(&cfg.Streams, "streams", 64, "concurrent streams (route-streams scenarios)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 1, "concurrent clients (unary scenarios)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "run length (unary and latency scenarios)")
	fs.IntVar(&cfg.Rate, "rate", 2000, "offered messages/s (latency scenarios)")
	fs.IntVar(&cfg.Sessions, "sessions", 10000, "idle WebSocket sessions (ws-idle)")
	fs.IntVar(&grpcWindow, "grpc-window", 0, "grpc-go client flow-control window in bytes; 0 = grpc-go's default (dynamic, BDP pings)")
	fs.StringVar(&grpcCA, "grpc-ca", "", "TLS to the gRPC targets, trusting this PEM CA (default: h2c)")
	fs.BoolVar(&idleSend, "idle-send", true, "ws-idle: send one message per session (false: only open the WebSockets)")
	fs.StringVar(&cfg.Label, "label", "", "row label in the report")
	fs.Parse(args)
	if cfg.Duration == 0 {
		cfg.Duration = 2e9
	}
	if len(targets) == 0 || cfg.Scenario == "" {
		fmt.Fprintln(os.Stderr, "loadgen run: --scenario and --target are required")
		os.Exit(2)
	}
	result, err := runScenario(cfg, targets)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %s: %v\n", cfg.Scenario, err)
		os.Exit(1)
	}
	printJSON(os.Stdout, result)
}

func freePorts(n int) {
	var listeners []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		listeners = append(listeners, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range listeners {
		l.Close()
	}
}
