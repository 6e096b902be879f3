package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Target is one server under test: its gRPC and HTTP addresses and the pids
// whose CPU time (summed) and RSS (each) are read.
type Target struct {
	Name string `json:"name"`
	GRPC string `json:"grpc,omitempty"`
	HTTP string `json:"http,omitempty"`
	Pids []int  `json:"pids,omitempty"`
	// Mux (mux=K): the WebSocket scenarios run as streams of one multiplexed session on /
	// (Sluice), with K more streams open and idle beside them.
	Mux     bool `json:"mux,omitempty"`
	MuxOpen int  `json:"mux_open,omitempty"`
}

type Config struct {
	Scenario    string        `json:"scenario"`
	Label       string        `json:"label,omitempty"`
	Runs        int           `json:"runs"`
	N           int           `json:"n"`
	Window      int           `json:"window"`
	Streams     int           `json:"streams"`
	Concurrency int           `json:"concurrency"`
	Duration    time.Duration `json:"duration_ns"`
	Rate        int           `json:"rate"`
	Sessions    int           `json:"sessions"`
}

// Metrics of one run: name -> value (e.g. "msg_per_s", "p99_us").
type Metrics map[string]float64

// Stat is the median, minimum and maximum of one metric over the counted runs.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

type TargetResult struct {
	Target
	Runs  []Metrics       `json:"runs"`
	Stats map[string]Stat `json:"stats"`
}

type Result struct {
	Config  Config         `json:"config"`
	Primary []string       `json:"metrics"` // the metrics shown in the table, in order
	Higher  bool           `json:"higher_is_better"`
	Targets []TargetResult `json:"targets"`
}

// A scenario: runs once against a target and returns its metrics.
type scenario struct {
	metrics []string
	higher  bool
	run     func(cfg Config, t Target, warmup bool) (Metrics, error)
	runs    func(cfg Config) int // counted runs (default cfg.Runs)
}

var scenarios = map[string]scenario{
	"grpc-route":         {[]string{"msg_per_s"}, true, grpcRoute, nil},
	"grpc-list":          {[]string{"msg_per_s"}, true, grpcList, nil},
	"grpc-record":        {[]string{"msg_per_s"}, true, grpcRecord, nil},
	"ws-route":           {[]string{"msg_per_s"}, true, wsRoute, nil},
	"ws-list":            {[]string{"msg_per_s"}, true, wsList, nil},
	"http-unary":         {[]string{"req_per_s"}, true, httpUnary, nil},
	"grpcweb-unary":      {[]string{"req_per_s"}, true, grpcWebUnary, nil},
	"grpcweb-list":       {[]string{"msg_per_s"}, true, grpcWebList, nil},
	"rest-unary":         {[]string{"req_per_s"}, true, restUnary, nil},
	"rest-list":          {[]string{"msg_per_s"}, true, restList, nil},
	"grpc-unary":         {[]string{"req_per_s"}, true, grpcUnary, nil},
	"grpc-route-streams": {[]string{"msg_per_s"}, true, grpcRouteStreams, nil},
	"ws-route-streams":   {[]string{"msg_per_s"}, true, wsRouteStreams, nil},
	"grpc-latency":       {[]string{"p50_us", "p99_us"}, false, grpcLatency, nil},
	"ws-latency":         {[]string{"p50_us", "p99_us"}, false, wsLatency, nil},
	"ws-idle":            {[]string{"rss_mb"}, false, wsIdle, func(Config) int { return 1 }},
}

func scenarioNames() []string {
	var names []string
	for name := range scenarios {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// sendPaced calls send(i) for i < n at rate per second on schedule (a late send is not made up
// by waiting less later), putting each send's time on sent first; it stops at send's first error.
func sendPaced(n, rate int, sent chan<- time.Time, send func(i int) error) error {
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := 0; i < n; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		sent <- time.Now()
		if err := send(i); err != nil {
			return err
		}
	}
	return nil
}

// warm shrinks a configuration for the uncounted warm-up run.
func warm(cfg Config) Config {
	cfg.N = max(cfg.N/5, 1000)
	cfg.Duration = cfg.Duration / 4
	return cfg
}

func max(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func runScenario(cfg Config, targets []Target) (*Result, error) {
	sc, ok := scenarios[cfg.Scenario]
	if !ok {
		return nil, fmt.Errorf("unknown scenario (known: %s)", strings.Join(scenarioNames(), ", "))
	}
	runs := cfg.Runs
	if sc.runs != nil {
		runs = sc.runs(cfg)
	}
	result := &Result{Config: cfg, Primary: sc.metrics, Higher: sc.higher}
	for _, t := range targets {
		result.Targets = append(result.Targets, TargetResult{Target: t})
	}
	if sc.runs == nil { // one uncounted warm-up per target
		for _, t := range targets {
			if _, err := measured(sc, warm(cfg), t, true); err != nil {
				return nil, fmt.Errorf("%s warm-up: %w", t.Name, err)
			}
		}
	}
	for r := 1; r <= runs; r++ {
		for i, t := range targets {
			m, err := measured(sc, cfg, t, false)
			if err != nil {
				return nil, fmt.Errorf("%s run %d: %w", t.Name, r, err)
			}
			result.Targets[i].Runs = append(result.Targets[i].Runs, m)
			var shown []string
			for _, k := range sc.metrics {
				shown = append(shown, fmt.Sprintf("%s %s", format(m[k]), k))
			}
			fmt.Fprintf(os.Stderr, "    %-9s run %d/%d: %s (loadgen CPU %.0f%%, server CPU %.0f%%)\n",
				t.Name, r, runs, strings.Join(shown, ", "), m["loadgen_cpu_pct"], m["server_cpu_pct"])
		}
	}
	for i := range result.Targets {
		result.Targets[i].Stats = stats(result.Targets[i].Runs)
	}
	return result, nil
}

// measured runs one scenario run and adds loadgen and server CPU figures.
func measured(sc scenario, cfg Config, t Target, warmup bool) (Metrics, error) {
	cpu0, wall0, srv0 := selfCPU(), time.Now(), serverCPU(t.Pids)
	m, err := sc.run(cfg, t, warmup)
	if err != nil {
		return nil, err
	}
	wall := time.Since(wall0).Seconds()
	m["wall_s"] = wall
	m["loadgen_cpu_pct"] = 100 * (selfCPU() - cpu0) / wall
	if len(t.Pids) > 0 {
		m["server_cpu_pct"] = 100 * (serverCPU(t.Pids) - srv0) / wall
	}
	return m, nil
}

func stats(runs []Metrics) map[string]Stat {
	out := map[string]Stat{}
	if len(runs) == 0 {
		return out
	}
	for k := range runs[0] {
		var values []float64
		for _, r := range runs {
			values = append(values, r[k])
		}
		sort.Float64s(values)
		median := values[len(values)/2]
		if len(values)%2 == 0 {
			median = (values[len(values)/2-1] + values[len(values)/2]) / 2
		}
		out[k] = Stat{Median: median, Min: values[0], Max: values[len(values)-1]}
	}
	return out
}

// selfCPU is this process's user+system CPU time in seconds (getrusage).
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// serverCPU sums utime+stime of pids from /proc/<pid>/stat, in seconds.
func serverCPU(pids []int) float64 {
	total := 0.0
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(data)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 (state) on
		var utime, stime float64
		fmt.Sscan(fields[11], &utime)  // field 14
		fmt.Sscan(fields[12], &stime)  // field 15
		total += (utime + stime) / 100 // USER_HZ
	}
	return total
}

// rssKB reads VmRSS of pid in kB.
func rssKB(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb float64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "VmRSS:"), "kB")), &kb)
			return kb
		}
	}
	return 0
}

func format(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func printJSON(w io.Writer, v interface{}) {
	data, _ := json.Marshal(v)
	fmt.Fprintln(w, string(data))
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}
