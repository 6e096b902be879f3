package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// Machine describes where the run happened.
type Machine struct {
	Nproc   int    `json:"nproc"`
	CPU     string `json:"cpu"`
	RAM     string `json:"ram"`
	Kernel  string `json:"kernel"`
	Swift   string `json:"swift"`
	Go      string `json:"go"`
	GRPCGo  string `json:"grpc_go"`
	Gorilla string `json:"gorilla_websocket"`
	Date    string `json:"date"`
	Load    string `json:"load_average_at_start"`
}

type Report struct {
	Machine    Machine   `json:"machine"`
	Mode       string    `json:"mode"`
	Command    string    `json:"command"`
	Results    []*Result `json:"results"`
	Targets    []Goal    `json:"targets"`
	TotalTime  float64   `json:"total_seconds"`
	GRPCWindow int       `json:"grpc_window_bytes"`
}

type Goal struct {
	Goal     string  `json:"goal"`
	Measured string  `json:"measured"`
	Met      bool    `json:"met"`
	Value    float64 `json:"value"`
}

func reportCommand(args []string) {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	results := fs.String("results", "", "JSON lines written by loadgen run")
	jsonOut := fs.String("json", "", "write the full report here")
	mdOut := fs.String("markdown", "", "write BENCHMARKS.md here")
	mode := fs.String("mode", "full", "full or quick")
	command := fs.String("command", "scripts/bench.sh", "the command that produced the run")
	swift := fs.String("swift-version", "", "swift --version")
	grpcgo := fs.String("grpc-go-version", "", "grpc-go version")
	gorilla := fs.String("gorilla-version", "", "gorilla/websocket version")
	total := fs.Float64("total-seconds", 0, "wall time of the whole run")
	load := fs.String("load", "", "load average when the run started")
	window := fs.Int("grpc-window", 0, "the grpc-go client window the run used")
	fs.Parse(args)

	rep := Report{Mode: *mode, Command: *command, TotalTime: *total, GRPCWindow: *window, Machine: machine(*swift, *grpcgo, *gorilla)}
	rep.Machine.Load = *load
	f, err := os.Open(*results)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<24)
	for scanner.Scan() {
		var r Result
		if json.Unmarshal(scanner.Bytes(), &r) == nil && len(r.Targets) > 0 {
			rep.Results = append(rep.Results, &r)
		}
	}
	f.Close()
	rep.Targets = goals(rep.Results)

	table := markdownTable(rep.Results)
	fmt.Println(table)
	fmt.Println(goalsTable(rep.Targets))
	if *jsonOut != "" {
		data, _ := json.MarshalIndent(rep, "", "  ")
		os.WriteFile(*jsonOut, append(data, '\n'), 0o644)
	}
	if *mdOut != "" {
		os.WriteFile(*mdOut, []byte(markdown(rep, table)), 0o644)
	}
}

func machine(swift, grpcgo, gorilla string) Machine {
	m := Machine{Nproc: runtime.NumCPU(), Go: runtime.Version(), Swift: swift, GRPCGo: grpcgo, Gorilla: gorilla,
		Date: time.Now().UTC().Format("2006-01-02 15:04 UTC")}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				m.CPU = strings.TrimSpace(line[strings.IndexByte(line, ':')+1:])
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.SplitN(string(data), "\n", 2)[0], "MemTotal: %f kB", &kb)
		m.RAM = fmt.Sprintf("%.1f GiB", kb/1024/1024)
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}

// proxyLabel starts the labels of the runs where both targets are proxies in front of the same
// grpc-go server (the upstream issue's comparisons).
const proxyLabel = "proxy: "

func find(results []*Result, scenario string, concurrency int, proxy bool) *Result {
	for _, r := range results {
		if r.Config.Scenario == scenario && (concurrency == 0 || r.Config.Concurrency == concurrency) &&
			strings.HasPrefix(r.Config.Label, proxyLabel) == proxy && !multiplexed(r) {
			return r
		}
	}
	return nil
}

// multiplexed: a run whose first target is a multiplexed WebSocket session (mux=K).
func multiplexed(r *Result) bool {
	return len(r.Targets) > 0 && r.Targets[0].Mux
}

func median(r *Result, target int, metric string) float64 {
	if r == nil || target >= len(r.Targets) {
		return 0
	}
	return r.Targets[target].Stats[metric].Median
}

func ratio(r *Result, metric string) float64 {
	b := median(r, 1, metric)
	if b == 0 {
		return 0
	}
	return median(r, 0, metric) / b
}

// goals are the issues' performance targets: the native port against grpc-go (the engine issue),
// the JSON front ends against the gorilla proxy (the front-end issue), and Sluice as a proxy in
// front of grpc-go against the gorilla proxy and nginx's grpc_pass to the same server (the
// upstream issue).
func goals(results []*Result) []Goal {
	var out []Goal
	add := func(goal string, ok bool, value float64, measured string) {
		out = append(out, Goal{Goal: goal, Met: ok, Value: value, Measured: measured})
	}
	for _, g := range []struct {
		scenario    string
		concurrency int
		proxy       bool
		metric      string
		goal        string
		want        float64
		lowerBetter bool
	}{
		{"grpc-route", 0, false, "msg_per_s", "native gRPC Route ≥ 1.2× grpc-go", 1.2, false},
		{"grpc-list", 0, false, "msg_per_s", "native gRPC List ≥ 1.5× grpc-go", 1.5, false},
		{"grpc-unary", 1, false, "req_per_s", "native gRPC unary, 1 client ≥ 1.0× grpc-go", 1, false},
		{"grpc-unary", 64, false, "req_per_s", "native gRPC unary, 64 clients ≥ 1.0× grpc-go", 1, false},
		{"grpc-latency", 0, false, "p50_us", "native gRPC Route latency p50 no worse than grpc-go", 1, true},
		{"grpc-latency", 0, false, "p99_us", "native gRPC Route latency p99 no worse than grpc-go", 1, true},
		{"ws-route", 0, false, "msg_per_s", "WebSocket/JSON Route ≥ 2.0× the Go proxy", 2, false},
		{"ws-list", 0, false, "msg_per_s", "WebSocket/JSON List ≥ 2.5× the Go proxy", 2.5, false},
		{"ws-route-streams", 0, false, "msg_per_s", "WebSocket/JSON Route, 64 streams ≥ 2.0× the Go proxy", 2, false},
		{"http-unary", 64, false, "req_per_s", "HTTP JSON unary, 64 clients ≥ 1.5× the Go proxy", 1.5, false},
		{"ws-latency", 0, false, "p99_us", "WebSocket/JSON Route p99 latency at the offered rate below the Go proxy's", 1, true},
		{"ws-route", 0, true, "msg_per_s", "proxy: WebSocket/JSON Route to grpc-go ≥ 2.0× the gorilla proxy to it", 2, false},
		{"grpc-route", 0, true, "msg_per_s", "proxy: native gRPC Route to grpc-go ≥ 1.0× nginx grpc_pass", 1, false},
		{"grpc-unary", 1, true, "req_per_s", "proxy: native gRPC unary to grpc-go, 1 client ≥ 1.0× nginx grpc_pass", 1, false},
		{"grpc-unary", 64, true, "req_per_s", "proxy: native gRPC unary to grpc-go, 64 clients ≥ 1.0× nginx grpc_pass", 1, false},
	} {
		r := find(results, g.scenario, g.concurrency, g.proxy)
		if r == nil {
			continue
		}
		v := ratio(r, g.metric)
		ok := v >= g.want
		if g.lowerBetter {
			ok = v > 0 && v <= g.want
		}
		add(g.goal, ok, v, fmt.Sprintf("%.2f×", v))
	}
	// gRPC-Web and REST through Sluice against Envoy's grpc_web and grpc_json_transcoder filters,
	// all in front of grpc-go (the gRPC-Web and Connect issue, the REST issue): ≥ 2× Envoy with
	// one worker, ≥ 1× with one per core.
	for _, g := range []struct {
		scenario, metric, workers, goal string
		want                            float64
	}{
		{"grpcweb-unary", "req_per_s", "(1 worker)", "proxy: gRPC-Web unary, 64 clients ≥ 2.0× Envoy grpc_web (1 worker)", 2},
		{"grpcweb-list", "msg_per_s", "(1 worker)", "proxy: gRPC-Web List ≥ 2.0× Envoy grpc_web (1 worker)", 2},
		{"grpcweb-unary", "req_per_s", "workers)", "proxy: gRPC-Web unary, 64 clients ≥ 1.0× Envoy grpc_web (a worker per core)", 1},
		{"grpcweb-list", "msg_per_s", "workers)", "proxy: gRPC-Web List ≥ 1.0× Envoy grpc_web (a worker per core)", 1},
		{"rest-unary", "req_per_s", "(1 worker)", "proxy: REST unary, 64 clients ≥ 2.0× Envoy grpc_json_transcoder (1 worker)", 2},
		{"rest-list", "msg_per_s", "(1 worker)", "proxy: REST server-streaming GET ≥ 2.0× Envoy grpc_json_transcoder (1 worker)", 2},
		{"rest-unary", "req_per_s", "workers)", "proxy: REST unary, 64 clients ≥ 1.0× Envoy grpc_json_transcoder (a worker per core)", 1},
		{"rest-list", "msg_per_s", "workers)", "proxy: REST server-streaming GET ≥ 1.0× Envoy grpc_json_transcoder (a worker per core)", 1},
	} {
		for _, r := range results {
			if r.Config.Scenario == g.scenario && strings.HasSuffix(r.Config.Label, g.workers) {
				v := ratio(r, g.metric)
				add(g.goal, v >= g.want, v, fmt.Sprintf("%.2f×", v))
				break
			}
		}
	}
	// The multiplexed session (the multiplexed WebSocket issue): 64 Route streams on one socket
	// against the Go proxy's 64 sockets, and one stream's p99 beside 1,000 open ones against a
	// single-RPC session's.
	for _, r := range results {
		if !multiplexed(r) {
			continue
		}
		switch r.Config.Scenario {
		case "ws-route-streams":
			v := ratio(r, "msg_per_s")
			add(fmt.Sprintf("WebSocket/JSON Route, %d streams of one multiplexed socket ≥ 3.0× the Go proxy's %d sockets",
				r.Config.Streams, r.Config.Streams), v >= 3, v, fmt.Sprintf("%.2f×", v))
		case "ws-latency":
			v := ratio(r, "p99_us")
			add(fmt.Sprintf("WebSocket/JSON Route p99 beside %s open streams of its socket ≤ 1.5× a single-RPC session's",
				human(float64(r.Targets[0].MuxOpen))), v > 0 && v <= 1.5, v, fmt.Sprintf("%.2f×", v))
		}
	}
	if r := find(results, "ws-idle", 0, false); r != nil {
		v := median(r, 0, "rss_mb")
		add(fmt.Sprintf("%s idle WebSocket sessions ≤ 250 MB RSS", human(float64(r.Config.Sessions))), v > 0 && v <= 250, v, fmt.Sprintf("%.0f MB", v))
	}
	return out
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// human formats a figure with thousands separators (or 3 significant digits when small).
func human(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.3g", v)
	}
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func cell(r *Result, target int, metric string) string {
	if target >= len(r.Targets) {
		return "–"
	}
	s := r.Targets[target].Stats[metric]
	if len(r.Targets[target].Runs) <= 1 {
		return human(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", human(s.Median), human(s.Min), human(s.Max))
}

var units = map[string]string{"msg_per_s": "msg/s", "req_per_s": "req/s", "p50_us": "p50 µs", "p99_us": "p99 µs", "rss_mb": "RSS MB"}

func markdownTable(results []*Result) string {
	var b strings.Builder
	b.WriteString("| scenario | Sluice | Go baseline | baseline | Sluice / baseline | loadgen CPU % (Sluice / baseline run) | server CPU % (Sluice / baseline) |\n")
	b.WriteString("|---|---:|---:|---|---:|---:|---:|\n")
	for _, r := range results {
		for _, metric := range r.Primary {
			label := r.Config.Label
			if label == "" {
				label = r.Config.Scenario
			}
			direction := ""
			if !r.Higher {
				direction = ", lower is better"
			}
			baseline := "–"
			if len(r.Targets) > 1 {
				baseline = r.Targets[1].Name
			}
			rt := ratio(r, metric)
			b.WriteString(fmt.Sprintf("| %s (%s%s) | %s | %s | %s | %.2f | %.0f / %.0f | %.0f / %.0f |\n",
				label, units[metric], direction, cell(r, 0, metric), cell(r, 1, metric), baseline, rt,
				median(r, 0, "loadgen_cpu_pct"), median(r, 1, "loadgen_cpu_pct"),
				median(r, 0, "server_cpu_pct"), median(r, 1, "server_cpu_pct")))
		}
	}
	return b.String()
}

func goalsTable(goals []Goal) string {
	var b strings.Builder
	b.WriteString("| target | measured | met |\n|---|---|---|\n")
	for _, g := range goals {
		met := "not met"
		if g.Met {
			met = "met"
		}
		b.WriteString(fmt.Sprintf("| %s | %s | %s |\n", g.Goal, g.Measured, met))
	}
	return b.String()
}

func markdown(rep Report, table string) string {
	m := rep.Machine
	var idle string
	if r := find(rep.Results, "ws-idle", 0, false); r != nil && len(r.Targets) > 1 {
		s, g := r.Targets[0].Stats, r.Targets[1].Stats
		idle = fmt.Sprintf("\nIdle sessions in detail: Sluice %.0f MB before, %.0f MB with the sessions open (%.1f kB per session, opened in %.1f s); "+
			"the Go proxy %.0f MB before, %.0f MB after (%.1f kB per session, %.1f s), and its grpc-go server %.0f MB on top "+
			"(Sluice hosts the services in the same process, so its figure includes them).\n",
			s["rss_before_mb"].Median, s["rss_mb"].Median, s["kb_per_session"].Median, s["open_s"].Median,
			g["rss_before_mb"].Median, g["rss_mb"].Median, g["kb_per_session"].Median, g["open_s"].Median, g["rss_pid1_mb"].Median)
	}
	cfg := func(scenario string) Config {
		if r := find(rep.Results, scenario, 0, false); r != nil {
			return r.Config
		}
		return Config{}
	}
	route, lat, streams := cfg("ws-route"), cfg("ws-latency"), cfg("ws-route-streams")
	return fmt.Sprintf(`# Benchmarks

Sluice against what a user would otherwise deploy, on the same machine in the same run:

- **native gRPC**: Sluice's gRPC port against a plain grpc-go server with the same services
  ([Benchmarks/baselines/grpcserver](Benchmarks/baselines/grpcserver/main.go));
- **WebSocket/JSON and HTTP JSON**: Sluice's HTTP port against the Go program a user would write:
  gorilla/websocket in front of a grpc-go client to that server, protojson, one goroutine per
  direction, same paths and control frames ([Benchmarks/baselines/wsproxy](Benchmarks/baselines/wsproxy/main.go));
- **rows marked "proxy:"**: Sluice as a proxy (`+"`--hosted none --upstream '*=…'`"+`) in front of the same
  grpc-go server, against the gorilla proxy (WebSocket/JSON) or nginx's `+"`grpc_pass`"+` (native gRPC) in
  front of it: both sides cross loopback to the backend.

Every figure comes from one load generator written in Go
([Benchmarks/baselines/loadgen](Benchmarks/baselines/loadgen)) that drives both targets the same way.

## How to run

`+"```sh"+`
scripts/bench.sh            # about 5 minutes: builds Sluice (release) and the Go programs, runs everything
scripts/bench.sh --quick    # 1-2 minutes, fewer and shorter runs
SLUICE_BIN=path/to/sluice scripts/bench.sh   # measure an existing binary instead of building one
`+"```"+`

It installs what it needs from Debian's packages when missing (golang-go, protobuf-compiler,
protoc-gen-go, protoc-gen-go-grpc, grpc-go, protobuf-go, gorilla/websocket), generates the Go
stubs from [Protos/](Protos/) into `+"`.build-bench/`"+`, starts every server on 127.0.0.1, prints
progress and the table, and writes this file and `+"`test-output/bench/results.json`"+` (every run's
figures, medians, minima and maxima).

## Machine of the latest run

| | |
|---|---|
| date | %s |
| mode | %s (%s) |
| CPUs | %d × %s |
| RAM | %s |
| kernel | %s |
| load average at start | %s |
| Swift | %s |
| Go | %s, grpc-go %s, gorilla/websocket %s |

The load generator and the servers share these CPUs, so absolute figures are lower than on a machine
with cores to spare; ratios are what the targets are about, and both sides of a ratio come from the
same run (runs alternate between Sluice and the baseline). The "loadgen CPU" column shows the load
generator's own CPU time (getrusage) over the wall time of its runs (100 = one core), the "server CPU"
column the server processes' (for the Go baseline of the WebSocket/HTTP rows: the proxy and the
grpc-go server together).

## Latest results

Median of the runs, (minimum–maximum) in parentheses.

%s
%s
## Targets

%s
## Method

- **Route, 1 stream**: %s messages on one bidirectional stream, pipelined with at most %d
  messages in flight (the sender waits for a response when %d are unanswered); msg/s = responses / time.
- **List**: one request, %s responses (both servers run with `+"`--list-count`"+` %s).
- **Route, %d streams**: %d concurrent streams (one connection per WebSocket stream; one HTTP/2
  connection for native gRPC), each ping-pong (one message in flight), %s messages in total.
- **Unary**: N clients calling SayHi back to back for %s: HTTP POST `+"`{\"name\":\"ada\"}`"+` with
  keep-alive (one connection per client), or grpc-go over one HTTP/2 connection.
- **Latency**: one Route stream, %d messages/s offered for %s; round trip from just before the
  send to the response; p50 and p99 of every message.
- **Idle sessions**: %s WebSocket sessions on `+"`/proto.StreamService/Route`"+`, each sends one
  message and reads its answer (so every session has a live RPC), then all stay idle for 2 s and the
  server's VmRSS is read from `+"`/proc/<pid>/status`"+`.
- The grpc-go client uses %s flow-control windows (`+"`BENCH_GRPC_WINDOW`"+`; by default grpc-go's own,
  sized by BDP PING frames, about one per read, as users deploy it). Sluice's engine applies
  grpc-go's server PING policy, so both servers take the same client.
- Every scenario has one uncounted warm-up run per target; WebSocket JSON frames are
  `+"`{\"pt\":{\"name\":\"bench\",\"value\":i}}`"+`; responses are checked (count, values, `+"`$end`"+` code 0).
`, m.Date, rep.Mode, fmt.Sprintf("%.0f s", rep.TotalTime), m.Nproc, m.CPU, m.RAM, m.Kernel, m.Load, m.Swift, m.Go, m.GRPCGo, m.Gorilla,
		table, idle, goalsTable(rep.Targets),
		human(float64(route.N)), route.Window, route.Window, human(float64(route.N)), human(float64(route.N)),
		streams.Streams, streams.Streams, human(float64(streams.N/max(streams.Streams, 1)*streams.Streams)),
		cfg("http-unary").Duration, lat.Rate, lat.Duration, human(float64(cfg("ws-idle").Sessions)), windowText(rep.GRPCWindow))
}

func windowText(bytes int) string {
	if bytes <= 0 {
		return "grpc-go's default (dynamic)"
	}
	if bytes%(1<<20) == 0 {
		return fmt.Sprintf("static %d MiB", bytes>>20)
	}
	return fmt.Sprintf("static %d-byte", bytes)
}
