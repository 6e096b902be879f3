package main

import (
	"bytes"
	"fmt"
	"net/http"
)

// REST routes (google.api.http) in front of the seed's methods, as scripts/bench.sh gives them to
// Sluice (--http-rule) and to Envoy's grpc_json_transcoder (scripts/rest-bench-protoset.py):
// GET /v1/hi/{name} is SayHi, GET /v1/points/{pt.name} is List.

// restUnary: SayHi calls per second over its REST route from Concurrency clients on HTTP/1.1
// keep-alive connections.
func restUnary(cfg Config, t Target, _ bool) (Metrics, error) {
	calls, _, seconds, err := requestLoop(cfg, http.MethodGet, "http://"+t.HTTP+"/v1/hi/ada", nil, nil,
		func(resp *http.Response, body []byte) (int, error) {
			if resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte(`{"result":"hi ada`)) {
				return 0, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, body)
			}
			return 1, nil
		})
	if err != nil {
		return nil, err
	}
	return Metrics{"req_per_s": float64(calls) / seconds}, nil
}

// restList: List's messages per second over its REST route (the server's --list-count each call),
// answered as one JSON array (`Accept: application/json`: Envoy's only framing, one of Sluice's).
func restList(cfg Config, t Target, _ bool) (Metrics, error) {
	_, messages, seconds, err := requestLoop(cfg, http.MethodGet, "http://"+t.HTTP+"/v1/points/a?pt.value=1", nil,
		map[string]string{"Accept": "application/json"},
		func(resp *http.Response, body []byte) (int, error) {
			body = bytes.TrimSpace(body)
			if resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte("[")) || !bytes.HasSuffix(body, []byte("]")) {
				return 0, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, body)
			}
			// Every message is {"pt":{"name":"a","value":N}} with N ≥ 1; an error would be a status object.
			if bytes.Contains(body, []byte(`"code"`)) {
				tail := body
				if len(tail) > 200 {
					tail = tail[len(tail)-200:]
				}
				return 0, fmt.Errorf("the stream ended with an error: %s", tail)
			}
			return bytes.Count(body, []byte(`"value"`)), nil
		})
	if err != nil {
		return nil, err
	}
	return Metrics{"msg_per_s": float64(messages) / seconds}, nil
}
