package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// httpUnary: Concurrency clients POSTing {"name":"ada"} to /hello.UserService/SayHi back to
// back for Duration, over keep-alive connections (one per client).
func httpUnary(cfg Config, t Target, _ bool) (Metrics, error) {
	calls, _, seconds, err := postLoop(cfg, "http://"+t.HTTP+"/hello.UserService/SayHi", []byte(`{"name":"ada"}`),
		map[string]string{"Content-Type": "application/json"},
		func(resp *http.Response, body []byte) (int, error) {
			if resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte(`{"result":`)) {
				return 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
			}
			return 1, nil
		})
	if err != nil {
		return nil, err
	}
	return Metrics{"req_per_s": float64(calls) / seconds}, nil
}

// postLoop: requestLoop with POST.
func postLoop(cfg Config, url string, body []byte, headers map[string]string,
	check func(resp *http.Response, body []byte) (int, error)) (int64, int64, float64, error) {
	return requestLoop(cfg, http.MethodPost, url, body, headers, check)
}

// requestLoop: Concurrency clients sending method url (with body, when not nil) one request after
// another for Duration over HTTP/1.1 keep-alive connections (one per client). check reads each
// answer and says how many messages it held; a request counts when check has no error. Returns the
// requests that counted, the messages, and the seconds taken; an error if any request failed.
func requestLoop(cfg Config, method, url string, body []byte, headers map[string]string,
	check func(resp *http.Response, body []byte) (int, error)) (int64, int64, float64, error) {
	transport := &http.Transport{
		MaxIdleConns: cfg.Concurrency, MaxIdleConnsPerHost: cfg.Concurrency, MaxConnsPerHost: cfg.Concurrency,
		DisableCompression: true, IdleConnTimeout: time.Minute,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	var done, failed, received int64
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
				var reader io.Reader
				if body != nil {
					reader = bytes.NewReader(body)
				}
				req, _ := http.NewRequest(method, url, reader)
				for name, value := range headers {
					req.Header.Set(name, value)
				}
				resp, err := client.Do(req)
				count := 0
				if err == nil {
					buf.Reset()
					_, err = buf.ReadFrom(resp.Body)
					resp.Body.Close()
					if err == nil {
						count, err = check(resp, buf.Bytes())
					}
				}
				if err != nil {
					atomic.AddInt64(&failed, 1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				atomic.AddInt64(&done, 1)
				atomic.AddInt64(&received, int64(count))
			}
		}()
	}
	wg.Wait()
	if failed > 0 {
		return 0, 0, 0, fmt.Errorf("%d requests failed, first: %v", failed, firstErr.Load())
	}
	return done, received, time.Since(start).Seconds(), nil
}
