package main

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// httpUnary: Concurrency clients POSTing {"name":"ada"} to /hello.UserService/SayHi back to
// back for Duration, over keep-alive connections (one per client).
func httpUnary(cfg Config, t Target, _ bool) (Metrics, error) {
	transport := &http.Transport{
		MaxIdleConns: cfg.Concurrency, MaxIdleConnsPerHost: cfg.Concurrency, MaxConnsPerHost: cfg.Concurrency,
		DisableCompression: true, IdleConnTimeout: time.Minute,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	url := "http://" + t.HTTP + "/hello.UserService/SayHi"
	body := []byte(`{"name":"ada"}`)
	var done, failed int64
	var firstErr atomic.Value
	deadline := time.Now().Add(cfg.Duration)
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < cfg.Concurrency; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					buf.Reset()
					_, err = buf.ReadFrom(resp.Body)
					resp.Body.Close()
					if err == nil && (resp.StatusCode != 200 || !bytes.HasPrefix(buf.Bytes(), []byte(`{"result":`))) {
						err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, buf.Bytes())
					}
				}
				if err != nil {
					atomic.AddInt64(&failed, 1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				atomic.AddInt64(&done, 1)
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		return nil, fmt.Errorf("%d requests failed, first: %v", failed, firstErr.Load())
	}
	return Metrics{"req_per_s": float64(done) / time.Since(start).Seconds()}, nil
}
