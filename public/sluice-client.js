/**
 * sluice-client.js — a small browser client for the Sluice gateway. No dependencies, no build
 * step: copy this file next to your page and `import { openRpc, callUnary } from "./sluice-client.js"`.
 *
 * Every RPC has one path, `/<package>.<Service>/<Method>` (e.g. `/proto.StreamService/List`),
 * on the gateway's HTTP port, both for WebSocket sessions and for HTTP JSON calls.
 *
 * openRpc(baseUrl, path, options) -> Rpc
 *   Opens one WebSocket session (= one RPC) on ws(s)://<host>/<path>.
 *   baseUrl     "http://host:port", "https://…", "ws://…" or "wss://…"; empty = the page's origin.
 *   options:
 *     metadata     { key: "v" | ["v1", "v2"] }  request metadata, sent as the first frame
 *     timeoutMs    deadline in milliseconds, sent in the same first frame ($timeoutMs)
 *     token        bearer token, offered as the subprotocol `bearer.<base64url>` (becomes the
 *                  `authorization: Bearer <token>` metadata; never echoed)
 *     singleRequest  true for unary and server-streaming methods: the server half-closes by
 *                  itself after the first message, so the state becomes "half-closed" then
 *     onHeaders(headers)   the response headers: { key: ["v", …] } (only when there are any)
 *     onMessage(message)   one response message (a plain object), in order
 *     onEnd(status)        exactly once: a google.rpc.Status { code, message?, details?, trailers? };
 *                          code 0 is OK. If the connection drops without an `$end` frame, a
 *                          synthesized status { code: 14 (UNAVAILABLE), message, closeCode } is given.
 *     onState(state, rpc)  "connecting" → "open" → "half-closed" → "ended" (rpc.status holds
 *                          the code) → "closed" (rpc.closeCode holds the WebSocket close code)
 *     onFrame(text, direction)  optional: every raw text frame, direction "in" or "out"
 *   Rpc:
 *     send(message)   sends one request message (an object; queued until the socket is open)
 *     sendRaw(text)   sends a text frame exactly as given (for experiments and error tests)
 *     end()           half-close: sends {"$end":true}; responses keep arriving until `$end`
 *     cancel()        sends {"$cancel":true}; the RPC ends with code 1 (CANCELLED). Before the
 *                     socket is open nothing is sent: the RPC ends at once, locally, with code 1
 *     ping(n)         sends {"$ping":n}; the server answers {"$pong":n} (reported via onFrame)
 *     state, status, closeCode   the current state, the final status, the Close code
 *     done            a Promise resolving to the final status
 *
 * callUnary(baseUrl, path, message, { headers, signal }) -> Promise<response object>
 *   HTTP JSON: POST <baseUrl><path> with Content-Type: application/json. Resolves to the response
 *   message; rejects with a SluiceError { code, message, details, httpStatus } built from the
 *   google.rpc.Status body the gateway answers on failure (code 14 for network/CORS failures).
 *
 * Example:
 *   const rpc = openRpc("", "/proto.StreamService/List", {
 *     singleRequest: true,
 *     onMessage: (m) => console.log(m.pt.value),
 *     onEnd: (s) => console.log("status", s.code, s.message),
 *   });
 *   rpc.send({ pt: { name: "a", value: 10 } });
 *   const hi = await callUnary("", "/hello.UserService/SayHi", { name: "ada" });
 */

/** Names of the gRPC status codes, indexed by code. */
export const CODE_NAMES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
  "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
];

/** "3 INVALID_ARGUMENT" for 3. */
export function codeName(code) {
  return `${code} ${CODE_NAMES[code] ?? "UNKNOWN"}`;
}

/** An RPC failure: a google.rpc.Status (code, message, details) plus the HTTP status, if any. */
export class SluiceError extends Error {
  constructor(status, httpStatus) {
    super(status.message || CODE_NAMES[status.code] || `code ${status.code}`);
    this.name = "SluiceError";
    this.code = status.code;
    this.details = status.details ?? [];
    this.httpStatus = httpStatus;
  }
}

/** The http(s) base URL without a trailing slash ("" = the page's origin). */
export function httpBase(baseUrl) {
  let base = (baseUrl || "").trim() || globalThis.location?.origin || "";
  base = base.replace(/^ws(s?):/i, "http$1:").replace(/\/+$/, "");
  if (!/^https?:\/\//i.test(base)) base = `http://${base}`;
  return base;
}

/** The ws(s) base URL for a base URL ("" = the page's origin). */
export function wsBase(baseUrl) {
  return httpBase(baseUrl).replace(/^http/i, "ws");
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Opens one RPC over a WebSocket; see the API notes at the top of this file. */
export function openRpc(baseUrl, path, options = {}) {
  const {
    metadata, timeoutMs, token, singleRequest = false,
    onHeaders, onMessage, onEnd, onState, onFrame,
  } = options;
  const protocols = ["grpc-json.v1"];
  if (token) protocols.push(`bearer.${base64url(token)}`);

  const ws = new WebSocket(wsBase(baseUrl) + path, protocols);
  const queue = [];
  let resolveDone;
  const rpc = {
    state: "connecting",
    status: null,
    closeCode: null,
    closeReason: "",
    done: new Promise((resolve) => { resolveDone = resolve; }),
    socket: ws,
    send(message) {
      sendText(JSON.stringify(message));
      if (singleRequest) halfClose();
    },
    sendRaw(text) {
      sendText(text);
    },
    end() {
      if (rpc.state !== "connecting" && rpc.state !== "open") return;
      sendText('{"$end":true}');
      halfClose();
    },
    cancel() {
      if (rpc.state === "ended" || rpc.state === "closed") return;
      if (ws.readyState === WebSocket.OPEN) sendText('{"$cancel":true}');
      else {
        queue.length = 0;
        finish({ code: 1, message: "cancelled before the connection opened" });
        ws.close();
      }
    },
    ping(n) {
      sendText(JSON.stringify({ $ping: n }));
    },
  };

  // Half-closed once the socket is open (a half-close asked for while connecting waits for it).
  let halfClosePending = false;
  function halfClose() {
    if (rpc.state === "connecting") halfClosePending = true;
    else if (rpc.state === "open") setState("half-closed");
  }

  function setState(state) {
    if (rpc.state === state) return;
    rpc.state = state;
    onState?.(state, rpc);
  }

  function sendText(text) {
    if (rpc.state === "ended" || rpc.state === "closed") {
      throw new Error(`the RPC has ended (state ${rpc.state}); open a new one`);
    }
    if (ws.readyState === WebSocket.CONNECTING) {
      queue.push(text);
      return;
    }
    if (ws.readyState !== WebSocket.OPEN) throw new Error("the WebSocket is not open");
    onFrame?.(text, "out");
    ws.send(text);
  }

  function finish(status) {
    if (rpc.status) return;
    rpc.status = status;
    setState("ended");
    onEnd?.(status);
    resolveDone(status);
  }

  ws.addEventListener("open", () => {
    if (rpc.state === "ended") return;
    if (metadata || timeoutMs != null) {
      const first = {};
      if (metadata) first.$metadata = metadata;
      if (timeoutMs != null) first.$timeoutMs = timeoutMs;
      const text = JSON.stringify(first);
      onFrame?.(text, "out");
      ws.send(text);
    }
    setState("open");
    for (const text of queue.splice(0)) {
      onFrame?.(text, "out");
      ws.send(text);
    }
    if (halfClosePending) setState("half-closed");
  });

  ws.addEventListener("message", (event) => {
    if (typeof event.data !== "string") return; // the gateway only sends text frames
    onFrame?.(event.data, "in");
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      finish({ code: 13, message: `unparsable frame from the gateway: ${event.data.slice(0, 200)}` });
      return;
    }
    if (frame && typeof frame === "object" && "$end" in frame) {
      finish(frame.$end ?? { code: 2, message: "empty $end" });
    } else if (frame && typeof frame === "object" && "$headers" in frame) {
      onHeaders?.(frame.$headers);
    } else if (frame && typeof frame === "object" && "$pong" in frame) {
      // answered ping: only visible through onFrame
    } else {
      onMessage?.(frame);
    }
  });

  ws.addEventListener("close", (event) => {
    rpc.closeCode = event.code;
    rpc.closeReason = event.reason;
    if (!rpc.status) {
      const why = event.code === 1006
        ? "the connection failed or was refused (e.g. 403 for a disallowed Origin, or gateway unreachable)"
        : `the connection closed (${event.code}${event.reason ? ` ${event.reason}` : ""}) without $end`;
      finish({ code: 14, message: why, closeCode: event.code });
    }
    setState("closed");
  });

  onState?.("connecting", rpc);
  return rpc;
}

/** One unary call over HTTP JSON; see the API notes at the top of this file. */
export async function callUnary(baseUrl, path, message, { headers = {}, signal } = {}) {
  let response;
  try {
    response = await fetch(httpBase(baseUrl) + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", ...headers },
      body: JSON.stringify(message ?? {}),
      signal,
    });
  } catch (error) {
    if (error?.name === "AbortError") throw new SluiceError({ code: 1, message: "aborted" });
    throw new SluiceError({ code: 14, message: `network error (gateway unreachable or CORS refused): ${error.message}` });
  }
  const text = await response.text();
  let body;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    body = undefined;
  }
  if (response.ok && body !== undefined) return body;
  if (body && typeof body === "object" && typeof body.code === "number") {
    throw new SluiceError(body, response.status);
  }
  throw new SluiceError(
    { code: 2, message: `HTTP ${response.status} ${response.statusText}: ${text.slice(0, 200)}` },
    response.status,
  );
}
