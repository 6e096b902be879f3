/**
 * sluice-client.js — a small browser client for the Sluice gateway. No dependencies, no build
 * step: copy this file next to your page and `import { openRpc, callUnary } from "./sluice-client.js"`.
 *
 * Every RPC has one path, `/<package>.<Service>/<Method>` (e.g. `/proto.StreamService/List`),
 * on the gateway's HTTP port, both for WebSocket sessions and for HTTP JSON calls.
 *
 * openRpc(baseUrl, path, options) -> Rpc
 *   Opens one RPC. By default it is a stream of the page's multiplexed session: one WebSocket on
 *   ws(s)://<host>/ for every RPC with the same baseUrl and token (README: "Many RPCs on one
 *   WebSocket"). Each stream asks for `credit` responses (32) and grants more as they are taken,
 *   so a consumer that reads slowly holds back only its own stream; sends past the server's
 *   request credit wait in the stream, nothing is dropped. If the socket goes away, every open
 *   stream ends with code 14; the next openRpc reconnects, after a backoff (250 ms doubling to
 *   10 s) when connecting failed. `mux: false` opens one WebSocket session for this RPC alone, on
 *   ws(s)://<host>/<path> (the single-RPC protocol's frames).
 *   baseUrl     "http://host:port", "https://…", "ws://…" or "wss://…"; empty = the page's origin.
 *   options:
 *     metadata     { key: "v" | ["v1", "v2"] }  request metadata (the start frame, or $metadata)
 *     timeoutMs    deadline in milliseconds (the start frame's timeoutMs, or $timeoutMs)
 *     credit       responses the stream takes before it grants more (32; multiplexed only)
 *     mux          false: a WebSocket of its own, on the RPC's path
 *     token        bearer token, offered as the subprotocol `bearer.<base64url>` (becomes the
 *                  `authorization: Bearer <token>` metadata; never echoed)
 *     singleRequest  true for unary and server-streaming methods: the server half-closes by
 *                  itself after the first message, so the state becomes "half-closed" then
 *     onHeaders(headers)   the response headers: { key: ["v", …] } (only when there are any)
 *     onMessage(message)   one response message (a plain object), in order; without it the
 *                          responses wait for async iteration: for await (const m of rpc) {…},
 *                          which ends when the RPC does and throws a SluiceError when it fails
 *                          (leaving the loop early cancels the RPC)
 *     onEnd(status)        exactly once: a google.rpc.Status { code, message?, details?, trailers? };
 *                          code 0 is OK. If the connection drops without an `$end` frame, a
 *                          synthesized status { code: 14 (UNAVAILABLE), message, closeCode } is given.
 *     onState(state, rpc)  "connecting" → "open" → "half-closed" → "ended" (rpc.status holds
 *                          the code) → "closed" (rpc.closeCode holds the WebSocket close code)
 *     onFrame(text, direction)  optional: every raw text frame of this RPC, "in" or "out"
 *   Rpc:
 *     send(message)   sends one request message (an object; queued until the socket is open)
 *     sendRaw(text)   sends a message given as JSON text exactly as written (for experiments and
 *                     error tests); with mux: false any text frame, control frames included
 *     end()           half-close; responses keep arriving until the RPC's end
 *     cancel()        cancels: the RPC ends with code 1 (CANCELLED). A single-RPC session that is
 *                     not open yet sends nothing: the RPC ends at once, locally, with code 1
 *     ping(n)         a ping the server answers with a pong
 *     id              the stream's id in the multiplexed session
 *     state, status, closeCode   the current state, the final status, the Close code
 *     done            a Promise resolving to the final status
 *
 * callUnary(baseUrl, path, message, { headers, signal }) -> Promise<response object>
 *   HTTP JSON: POST <baseUrl><path> with Content-Type: application/json. Resolves to the response
 *   message; rejects with a SluiceError { code, message, details, httpStatus } built from the
 *   google.rpc.Status body the gateway answers on failure (code 14 for network/CORS failures).
 *
 * reflect(baseUrl, { token, timeoutMs, version }) -> Promise<{ services, descriptors, version }>
 *   Every service the gateway serves, from gRPC server reflection over one WebSocket:
 *   services     [{ name, methods: [{ name, path, kind, inputType, outputType, clientStreaming,
 *                serverStreaming }], error? }]; kind is "unary", "server streaming",
 *                "client streaming" or "bidirectional"
 *   descriptors  a Descriptors: messages, enums and services by full name, decoded from the
 *                FileDescriptorProto bytes reflection sends, and descriptors.template(typeName), a
 *                request object with every field at its proto3 JSON default
 *
 * Example:
 *   const rpc = openRpc("", "/proto.StreamService/List", {
 *     singleRequest: true,
 *     onMessage: (m) => console.log(m.pt.value),
 *     onEnd: (s) => console.log("status", s.code, s.message),
 *   });
 *   rpc.send({ pt: { name: "a", value: 10 } });
 *   const route = openRpc("", "/proto.StreamService/Route");   // the same socket
 *   route.send({ pt: { name: "b", value: 1 } });
 *   route.end();
 *   for await (const answer of route) console.log(answer.pt.value);
 *   const hi = await callUnary("", "/hello.UserService/SayHi", { name: "ada" });
 *   const { services, descriptors } = await reflect("");
 *   descriptors.template("proto.StreamRequest");   // { pt: { name: "", value: 0 } }
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

/**
 * Opens one RPC; see the API notes at the top of this file. By default it runs on the page's
 * multiplexed session for `baseUrl` and `token` (one socket for every RPC); `mux: false` opens a
 * WebSocket of its own on the RPC's path.
 */
export function openRpc(baseUrl, path, options = {}) {
  if (options.mux === false) return openSingleRpc(baseUrl, path, options);
  return MuxSession.for(baseUrl, options.token).open(path, options);
}

/**
 * What both kinds of RPC share: the state, the one final status, the `done` promise, and the
 * delivery of responses, either to `onMessage` or, without it, to async iteration
 * (`for await (const message of rpc)`), which throws a SluiceError when the RPC fails. `consumed`
 * is told each time a message was taken (credit for a multiplexed stream).
 */
function rpcBase(options, consumed = () => {}) {
  const { onHeaders, onMessage, onEnd, onState } = options;
  const inbox = [];
  let waiter = null;
  let resolveDone;
  const rpc = {
    state: "connecting",
    status: null,
    closeCode: null,
    closeReason: "",
    done: new Promise((resolve) => { resolveDone = resolve; }),
    [Symbol.asyncIterator]() {
      return {
        next: () => new Promise((resolve, reject) => {
          waiter = { resolve, reject };
          wake();
        }),
        return: async () => {
          if (!rpc.status) rpc.cancel();
          return { done: true, value: undefined };
        },
      };
    },
  };
  function wake() {
    if (!waiter) return;
    const { resolve, reject } = waiter;
    if (inbox.length) {
      waiter = null;
      resolve({ done: false, value: inbox.shift() });
      consumed();
    } else if (rpc.status) {
      waiter = null;
      if (rpc.status.code === 0) resolve({ done: true, value: undefined });
      else reject(new SluiceError(rpc.status));
    }
  }
  const base = {
    rpc,
    setState(state) {
      if (rpc.state === state) return;
      rpc.state = state;
      onState?.(state, rpc);
    },
    headers(headers) {
      onHeaders?.(headers);
    },
    message(message) {
      if (onMessage) {
        onMessage(message);
        consumed();
      } else {
        inbox.push(message);
        wake();
      }
    },
    finish(status) {
      if (rpc.status) return;
      rpc.status = status;
      base.setState("ended");
      onEnd?.(status);
      resolveDone(status);
      wake();
    },
  };
  return base;
}

/** Opens one RPC on a WebSocket of its own (`mux: false`); see the API notes at the top. */
export function openSingleRpc(baseUrl, path, options = {}) {
  const { metadata, timeoutMs, token, singleRequest = false, onFrame } = options;
  const protocols = ["grpc-json.v1"];
  if (token) protocols.push(`bearer.${base64url(token)}`);

  const ws = new WebSocket(wsBase(baseUrl) + path, protocols);
  const queue = [];
  const base = rpcBase(options);
  const { rpc, setState, finish } = base;
  Object.assign(rpc, {
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
  });

  // Half-closed once the socket is open (a half-close asked for while connecting waits for it).
  let halfClosePending = false;
  function halfClose() {
    if (rpc.state === "connecting") halfClosePending = true;
    else if (rpc.state === "open") setState("half-closed");
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
      base.headers(frame.$headers);
    } else if (frame && typeof frame === "object" && "$pong" in frame) {
      // answered ping: only visible through onFrame
    } else {
      base.message(frame);
    }
  });

  ws.addEventListener("close", (event) => {
    rpc.closeCode = event.code;
    rpc.closeReason = event.reason;
    if (!rpc.status) finish(lostStatus(event, "$end"));
    setState("closed");
  });

  options.onState?.("connecting", rpc);
  return rpc;
}

/** The status of an RPC whose connection closed before its last frame (`last`). */
function lostStatus(event, last) {
  const why = event.code === 1006
    ? "the connection failed or was refused (e.g. 403 for a disallowed Origin, 401 without a valid token, or gateway unreachable)"
    : `the connection closed (${event.code}${event.reason ? ` ${event.reason}` : ""}) without ${last}`;
  return { code: 14, message: why, closeCode: event.code };
}

/**
 * The multiplexed session (README: "Many RPCs on one WebSocket"): one socket on `/` for every RPC
 * of a page with the same gateway and token. Each RPC is a stream with its own credits: it asks
 * for `RESPONSE_WINDOW` responses and grants more as they are taken (by `onMessage`, or by async
 * iteration, so a consumer that reads slowly holds back only its own stream), and it keeps within
 * the request credit the server grants (sends past it wait in the stream). When the socket goes
 * away every open stream ends with code 14; the next RPC opens a new socket, after a backoff that
 * doubles with each failed attempt (250 ms to 10 s).
 */
class MuxSession {
  static RESPONSE_WINDOW = 32;
  static REQUEST_WINDOW = 16;
  static sessions = new Map();

  /** The page's session for this gateway and token. */
  static for(baseUrl, token) {
    const key = `${wsBase(baseUrl)}\n${token ?? ""}`;
    let session = MuxSession.sessions.get(key);
    if (!session) {
      session = new MuxSession(wsBase(baseUrl) + "/", token);
      MuxSession.sessions.set(key, session);
    }
    return session;
  }

  constructor(url, token) {
    this.url = url;
    this.token = token;
    this.ws = null;
    this.streams = new Map();
    this.outbox = [];
    this.nextId = 1;
    this.failures = 0;
    this.retry = null;
  }

  /** Opens the socket unless it is open, opening, or waiting for its backoff. */
  connect() {
    if (this.ws || this.retry) return;
    const protocols = ["sluice.mux.v1"];
    if (this.token) protocols.push(`bearer.${base64url(this.token)}`);
    const ws = new WebSocket(this.url, protocols);
    this.ws = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      this.failures = 0;
      for (const text of this.outbox.splice(0)) this.write(text);
      for (const stream of this.streams.values()) stream.opened();
    });
    ws.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // the gateway sends JSON only
      }
      if (frame === null || typeof frame !== "object" || !("id" in frame)) return; // a pong
      this.streams.get(frame.id)?.received(frame, event.data);
    });
    ws.addEventListener("close", (event) => {
      this.ws = null;
      this.outbox.length = 0;
      if (!opened) this.failures += 1;
      const lost = [...this.streams.values()];
      this.streams.clear();
      for (const stream of lost) stream.lost(event);
    });
  }

  /** Sends a frame now, or once the socket is open. */
  send(frame, stream) {
    const text = typeof frame === "string" ? frame : JSON.stringify(frame);
    stream?.onFrame?.(text, "out");
    if (this.ws?.readyState === WebSocket.OPEN) this.write(text);
    else {
      this.outbox.push(text);
      this.connectSoon();
    }
  }

  write(text) {
    this.ws.send(text);
  }

  /** Connects now, or after the backoff of earlier failed attempts. */
  connectSoon() {
    if (this.ws || this.retry) return;
    if (!this.failures) return this.connect();
    const delay = Math.min(10000, 250 * 2 ** (this.failures - 1)) * (0.75 + Math.random() / 2);
    this.retry = setTimeout(() => {
      this.retry = null;
      if (this.streams.size) this.connect();
    }, delay);
  }

  /** Opens a stream: see openRpc. */
  open(path, options) {
    const id = this.nextId++;
    const session = this;
    const { metadata, timeoutMs, singleRequest = false, onFrame } = options;
    const window = Math.max(1, Math.floor(options.credit ?? MuxSession.RESPONSE_WINDOW));
    let taken = 0;
    const base = rpcBase(options, () => {
      if (++taken >= Math.max(1, Math.floor(window / 2)) && !rpc.status) {
        session.send({ id, credit: taken }, stream);
        taken = 0;
      }
    });
    const { rpc, setState, finish } = base;
    let requestCredit = MuxSession.REQUEST_WINDOW;
    const waiting = []; // request frames past the credit, sent as the server grants more
    let endWaiting = false;
    let halfClosePending = false;

    function sendRequest(frame) {
      if (rpc.state === "ended" || rpc.state === "closed") {
        throw new Error(`the RPC has ended (state ${rpc.state}); open a new one`);
      }
      if (requestCredit > 0 && !waiting.length) {
        requestCredit -= 1;
        session.send(frame, stream);
      } else {
        waiting.push(frame);
      }
    }
    function halfClose() {
      if (rpc.state === "connecting") halfClosePending = true;
      else if (rpc.state === "open") setState("half-closed");
    }
    function end() {
      session.streams.delete(id);
      setState("closed");
    }

    const stream = {
      onFrame,
      opened() {
        if (rpc.state !== "connecting") return;
        setState("open");
        if (halfClosePending) setState("half-closed");
      },
      received(frame, text) {
        onFrame?.(text, "in");
        if ("end" in frame) {
          finish(frame.end ?? { code: 2, message: "empty end" });
          end();
        } else if ("headers" in frame) base.headers(frame.headers);
        else if ("message" in frame) base.message(frame.message);
        else if ("credit" in frame) {
          requestCredit += frame.credit;
          while (requestCredit > 0 && waiting.length) {
            requestCredit -= 1;
            session.send(waiting.shift(), stream);
          }
          if (endWaiting && !waiting.length) {
            endWaiting = false;
            session.send({ id, end: true }, stream);
          }
        }
      },
      lost(event) {
        rpc.closeCode = event.code;
        rpc.closeReason = event.reason;
        finish(lostStatus(event, "its end"));
        setState("closed");
      },
    };

    Object.assign(rpc, {
      id,
      send(message) {
        sendRequest({ id, message });
        if (singleRequest) halfClose();
      },
      sendRaw(text) {
        JSON.parse(text); // a frame that is not JSON would end every stream of the session
        sendRequest(`{"id":${id},"message":${text}}`);
        if (singleRequest) halfClose();
      },
      end() {
        if (rpc.state !== "connecting" && rpc.state !== "open") return;
        if (waiting.length) endWaiting = true;
        else session.send({ id, end: true }, stream);
        halfClose();
      },
      cancel() {
        if (rpc.status) return;
        waiting.length = 0;
        session.send({ id, cancel: true }, stream);
      },
      ping(n) {
        session.send({ ping: n });
      },
    });

    this.streams.set(id, stream);
    const start = { id, start: path, credit: window };
    if (metadata) start.metadata = metadata;
    if (timeoutMs != null) start.timeoutMs = timeoutMs;
    options.onState?.("connecting", rpc);
    this.send(start, stream);
    if (this.ws?.readyState === WebSocket.OPEN) stream.opened();
    return rpc;
  }
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

// --- Server reflection and descriptors -------------------------------------------------------------
//
// Reflection answers with serialized google.protobuf.FileDescriptorProto messages (base64 in the
// JSON). A page like this one cannot load a protobuf library: there is no build step, no npm and no
// network to fetch one from. So the few fields of descriptor.proto that describing a method and
// building a request template need are read by the small protobuf wire-format reader below
// (varints, length-delimited fields; fixed32, fixed64 and groups are skipped). Field numbers are
// those of google/protobuf/descriptor.proto.

/** Reads protobuf wire format from a Uint8Array. */
class WireReader {
  constructor(bytes) {
    this.bytes = bytes;
    this.pos = 0;
  }

  get done() {
    return this.pos >= this.bytes.length;
  }

  advance(n) {
    if (this.pos + n > this.bytes.length) throw new Error("truncated protobuf message");
    this.pos += n;
  }

  /** A varint as [low 32 bits, high 32 bits], both unsigned. */
  varint64() {
    let lo = 0;
    let hi = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (this.pos >= this.bytes.length) throw new Error("truncated protobuf message");
      const b = this.bytes[this.pos++];
      if (shift < 28) lo |= (b & 0x7f) << shift;
      else if (shift === 28) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >> 4;
      } else hi |= (b & 0x7f) << (shift - 32);
      if (!(b & 0x80)) return [lo >>> 0, hi >>> 0];
    }
    throw new Error("malformed varint (more than 10 bytes)");
  }

  /** An unsigned varint as a Number (exact up to 2^53). */
  uint() {
    const [lo, hi] = this.varint64();
    return hi * 2 ** 32 + lo;
  }

  /** An int32 varint (negative values take 10 bytes on the wire; their low 32 bits carry it). */
  int32() {
    return this.varint64()[0] | 0;
  }

  bool() {
    const [lo, hi] = this.varint64();
    return (lo | hi) !== 0;
  }

  /** A length-delimited field's bytes. */
  bytesField() {
    const length = this.uint();
    const start = this.pos;
    this.advance(length);
    return this.bytes.subarray(start, this.pos);
  }

  string() {
    return new TextDecoder().decode(this.bytesField());
  }

  /** Skips the value of a field of wire type `wireType` (field `number`, for groups). */
  skip(wireType, number) {
    switch (wireType) {
      case 0: this.varint64(); break;
      case 1: this.advance(8); break;
      case 2: this.bytesField(); break;
      case 5: this.advance(4); break;
      case 3: // a group: skip its fields up to the matching end-group tag
        for (;;) {
          if (this.done) throw new Error("truncated protobuf group");
          const key = this.uint();
          const type = key % 8;
          if (type === 4) {
            if (Math.floor(key / 8) !== number) throw new Error("mismatched protobuf end-group");
            break;
          }
          this.skip(type, Math.floor(key / 8));
        }
        break;
      default: throw new Error(`invalid protobuf wire type ${wireType}`);
    }
  }
}

/**
 * Calls read(number, wireType, reader) for each field of a message; a field it does not consume
 * (it returns false) is skipped.
 */
function readFields(bytes, read) {
  const reader = new WireReader(bytes);
  while (!reader.done) {
    const key = reader.uint();
    const number = Math.floor(key / 8);
    const wireType = key % 8;
    if (number === 0) throw new Error("invalid protobuf field number 0");
    if (!read(number, wireType, reader)) reader.skip(wireType, number);
  }
}

const VARINT = 0;
const LEN = 2;

function decodeField(bytes) {
  const field = {
    name: "", number: 0, label: 1, type: 0, typeName: "", defaultValue: undefined,
    oneofIndex: undefined, jsonName: "", proto3Optional: false,
  };
  readFields(bytes, (no, wt, r) => {
    if (wt === LEN && no === 1) field.name = r.string();
    else if (wt === VARINT && no === 3) field.number = r.int32();
    else if (wt === VARINT && no === 4) field.label = r.int32();
    else if (wt === VARINT && no === 5) field.type = r.int32();
    else if (wt === LEN && no === 6) field.typeName = r.string();
    else if (wt === LEN && no === 7) field.defaultValue = r.string();
    else if (wt === VARINT && no === 9) field.oneofIndex = r.int32();
    else if (wt === LEN && no === 10) field.jsonName = r.string();
    else if (wt === VARINT && no === 17) field.proto3Optional = r.bool();
    else return false;
    return true;
  });
  // protoc fills json_name; hand-made descriptors may not: protobuf's own rule then.
  if (!field.jsonName) field.jsonName = field.name.replace(/_+([a-z0-9]?)/gi, (_, c) => c.toUpperCase());
  return field;
}

function decodeEnum(bytes) {
  const en = { name: "", values: [] };
  readFields(bytes, (no, wt, r) => {
    if (wt === LEN && no === 1) en.name = r.string();
    else if (wt === LEN && no === 2) {
      const value = { name: "", number: 0 };
      readFields(r.bytesField(), (vno, vwt, vr) => {
        if (vwt === LEN && vno === 1) value.name = vr.string();
        else if (vwt === VARINT && vno === 2) value.number = vr.int32();
        else return false;
        return true;
      });
      en.values.push(value);
    } else return false;
    return true;
  });
  return en;
}

function decodeMessage(bytes) {
  const message = { name: "", fields: [], messages: [], enums: [], oneofs: [], mapEntry: false };
  readFields(bytes, (no, wt, r) => {
    if (wt === LEN && no === 1) message.name = r.string();
    else if (wt === LEN && no === 2) message.fields.push(decodeField(r.bytesField()));
    else if (wt === LEN && no === 3) message.messages.push(decodeMessage(r.bytesField()));
    else if (wt === LEN && no === 4) message.enums.push(decodeEnum(r.bytesField()));
    else if (wt === LEN && no === 7) {
      readFields(r.bytesField(), (ono, owt, or) => {
        if (owt === VARINT && ono === 7) message.mapEntry = or.bool();
        else return false;
        return true;
      });
    } else if (wt === LEN && no === 8) {
      let name = "";
      readFields(r.bytesField(), (ono, owt, or) => {
        if (owt === LEN && ono === 1) name = or.string();
        else return false;
        return true;
      });
      message.oneofs.push(name);
    } else return false;
    return true;
  });
  return message;
}

function decodeService(bytes) {
  const service = { name: "", methods: [] };
  readFields(bytes, (no, wt, r) => {
    if (wt === LEN && no === 1) service.name = r.string();
    else if (wt === LEN && no === 2) {
      const method = { name: "", inputType: "", outputType: "", clientStreaming: false, serverStreaming: false };
      readFields(r.bytesField(), (mno, mwt, mr) => {
        if (mwt === LEN && mno === 1) method.name = mr.string();
        else if (mwt === LEN && mno === 2) method.inputType = mr.string();
        else if (mwt === LEN && mno === 3) method.outputType = mr.string();
        else if (mwt === VARINT && mno === 5) method.clientStreaming = mr.bool();
        else if (mwt === VARINT && mno === 6) method.serverStreaming = mr.bool();
        else return false;
        return true;
      });
      service.methods.push(method);
    } else return false;
    return true;
  });
  return service;
}

/** Decodes a serialized google.protobuf.FileDescriptorProto (the fields named above). */
export function decodeFileDescriptor(bytes) {
  const file = { name: "", package: "", dependencies: [], messages: [], enums: [], services: [] };
  readFields(bytes, (no, wt, r) => {
    if (wt !== LEN) return false;
    if (no === 1) file.name = r.string();
    else if (no === 2) file.package = r.string();
    else if (no === 3) file.dependencies.push(r.string());
    else if (no === 4) file.messages.push(decodeMessage(r.bytesField()));
    else if (no === 5) file.enums.push(decodeEnum(r.bytesField()));
    else if (no === 6) file.services.push(decodeService(r.bytesField()));
    else return false;
    return true;
  });
  return file;
}

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** "unary", "server streaming", "client streaming" or "bidirectional". */
export function methodKind({ clientStreaming, serverStreaming }) {
  if (clientStreaming) return serverStreaming ? "bidirectional" : "client streaming";
  return serverStreaming ? "server streaming" : "unary";
}

// FieldDescriptorProto.Type and .Label values.
const TYPE = { DOUBLE: 1, FLOAT: 2, INT64: 3, UINT64: 4, INT32: 5, FIXED64: 6, FIXED32: 7, BOOL: 8, STRING: 9,
  GROUP: 10, MESSAGE: 11, BYTES: 12, UINT32: 13, ENUM: 14, SFIXED32: 15, SFIXED64: 16, SINT32: 17, SINT64: 18 };
const LABEL_REPEATED = 3;
const INT64_TYPES = new Set([TYPE.INT64, TYPE.UINT64, TYPE.FIXED64, TYPE.SFIXED64, TYPE.SINT64]);

/** The proto3 JSON form of a well-known type's default, or undefined for other types. */
function wellKnownDefault(fullName) {
  switch (fullName) {
    case "google.protobuf.Timestamp": return "1970-01-01T00:00:00Z";
    case "google.protobuf.Duration": return "0s";
    case "google.protobuf.FieldMask": return "";
    case "google.protobuf.Struct": case "google.protobuf.Any": case "google.protobuf.Empty": return {};
    case "google.protobuf.Value": return null;
    case "google.protobuf.ListValue": return [];
    case "google.protobuf.DoubleValue": case "google.protobuf.FloatValue":
    case "google.protobuf.Int32Value": case "google.protobuf.UInt32Value": return 0;
    case "google.protobuf.Int64Value": case "google.protobuf.UInt64Value": return "0";
    case "google.protobuf.BoolValue": return false;
    case "google.protobuf.StringValue": case "google.protobuf.BytesValue": return "";
    default: return undefined;
  }
}

/**
 * The messages, enums and services of a set of file descriptors, by full name (no leading dot),
 * and request templates built from them.
 */
export class Descriptors {
  constructor() {
    this.files = new Map();
    this.messages = new Map();
    this.enums = new Map();
    this.services = new Map();
  }

  /** Adds one serialized FileDescriptorProto (bytes or base64); a file seen before is skipped. */
  add(fileDescriptorProto) {
    const bytes = typeof fileDescriptorProto === "string" ? base64Bytes(fileDescriptorProto) : fileDescriptorProto;
    const file = decodeFileDescriptor(bytes);
    if (this.files.has(file.name)) return this.files.get(file.name);
    this.files.set(file.name, file);
    const prefix = file.package ? `${file.package}.` : "";
    const addEnum = (en, scope) => this.enums.set(scope + en.name, { ...en, fullName: scope + en.name });
    const addMessage = (message, scope) => {
      const fullName = scope + message.name;
      this.messages.set(fullName, { ...message, fullName });
      for (const nested of message.messages) addMessage(nested, `${fullName}.`);
      for (const en of message.enums) addEnum(en, `${fullName}.`);
    };
    for (const message of file.messages) addMessage(message, prefix);
    for (const en of file.enums) addEnum(en, prefix);
    for (const service of file.services) {
      const fullName = prefix + service.name;
      this.services.set(fullName, {
        name: fullName,
        file: file.name,
        methods: service.methods.map((m) => ({
          ...m,
          inputType: m.inputType.replace(/^\./, ""),
          outputType: m.outputType.replace(/^\./, ""),
          path: `/${fullName}/${m.name}`,
          kind: methodKind(m),
        })),
      });
    }
    return file;
  }

  /** The full name a field's type_name refers to, seen from message `scope` (protoc writes ".pkg.Type"). */
  resolve(typeName, scope) {
    if (typeName.startsWith(".")) return typeName.slice(1);
    const parts = scope.split(".");
    for (let n = parts.length; n >= 0; n--) {
      const candidate = [...parts.slice(0, n), typeName].join(".");
      if (this.messages.has(candidate) || this.enums.has(candidate)) return candidate;
    }
    return typeName;
  }

  /**
   * A request template for message `typeName`: every field with its proto3 JSON default (json
   * names; int64 kinds as "0"; enums by their first value's name; [] for repeated, {} for maps;
   * well-known types in their JSON forms), only the first member of each oneof, nested messages
   * expanded except a type inside itself or below `maxDepth` levels, which stays {}.
   */
  template(typeName, { maxDepth = 6 } = {}) {
    const build = (fullName, path) => {
      const known = wellKnownDefault(fullName);
      if (known !== undefined) return known;
      const message = this.messages.get(fullName);
      if (!message || path.includes(fullName) || path.length >= maxDepth) return {};
      const out = {};
      const oneofsSeen = new Set();
      for (const field of message.fields) {
        if (field.oneofIndex !== undefined && !field.proto3Optional) {
          if (oneofsSeen.has(field.oneofIndex)) continue;
          oneofsSeen.add(field.oneofIndex);
        }
        out[field.jsonName] = this.fieldDefault(field, fullName, [...path, fullName], build);
      }
      return out;
    };
    return build(typeName.replace(/^\./, ""), []);
  }

  fieldDefault(field, scope, path, build) {
    const typeName = field.typeName ? this.resolve(field.typeName, scope) : "";
    if (field.label === LABEL_REPEATED) return this.messages.get(typeName)?.mapEntry ? {} : [];
    const given = field.defaultValue; // proto2 [default = …]
    switch (field.type) {
      case TYPE.MESSAGE: case TYPE.GROUP: return build(typeName, path);
      case TYPE.ENUM: {
        if (typeName === "google.protobuf.NullValue") return null;
        return given ?? this.enums.get(typeName)?.values[0]?.name ?? 0;
      }
      case TYPE.BOOL: return given === "true";
      case TYPE.STRING: return given ?? "";
      case TYPE.BYTES: return "";
      default:
        if (INT64_TYPES.has(field.type)) return given ?? "0";
        if (given === "inf") return "Infinity";
        if (given === "-inf") return "-Infinity";
        if (given === "nan") return "NaN";
        return given !== undefined ? Number(given) : 0;
    }
  }
}

/**
 * Every service the gateway serves and its methods, from gRPC server reflection over a WebSocket
 * (`/grpc.reflection.v1.ServerReflection/ServerReflectionInfo`, v1alpha when v1 is unimplemented).
 * Resolves to { services: [{ name, methods: [{ name, path, kind, inputType, outputType,
 * clientStreaming, serverStreaming }], error? }], descriptors: Descriptors, version };
 * rejects with a SluiceError when the reflection RPC fails.
 *   options: token (as for openRpc), timeoutMs (10000), version ("v1" or "v1alpha")
 */
export async function reflect(baseUrl, { token, timeoutMs = 10000, version } = {}) {
  if (version) return reflectWith(baseUrl, version, token, timeoutMs);
  try {
    return await reflectWith(baseUrl, "v1", token, timeoutMs);
  } catch (error) {
    if (error.code !== 12) throw error; // UNIMPLEMENTED: an older server may have v1alpha only
    return reflectWith(baseUrl, "v1alpha", token, timeoutMs);
  }
}

function reflectWith(baseUrl, version, token, timeoutMs) {
  return new Promise((resolve, reject) => {
    const descriptors = new Descriptors();
    const services = [];
    const asked = []; // the services whose fileContainingSymbol answer is still due, in order
    let failure = null;
    let listed = false;
    const rpc = openRpc(baseUrl, `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`, {
      token,
      timeoutMs,
      onMessage(answer) {
        try {
          if (!listed) {
            listed = true;
            if (answer.errorResponse) throw reflectionError(answer.errorResponse, "listServices");
            for (const { name } of answer.listServicesResponse?.service ?? []) {
              const service = { name, methods: [] };
              services.push(service);
              asked.push(service);
              rpc.send({ fileContainingSymbol: name });
            }
          } else {
            const service = asked.shift();
            if (!service) throw new Error("an unrequested reflection answer");
            if (answer.errorResponse) {
              const { errorCode, errorMessage } = answer.errorResponse;
              service.error = `${codeName(errorCode ?? 2)}${errorMessage ? `: ${errorMessage}` : ""}`;
            }
            // Each file comes once per stream: later answers leave out files sent before.
            for (const file of answer.fileDescriptorResponse?.fileDescriptorProto ?? []) descriptors.add(file);
          }
          if (!asked.length) rpc.end();
        } catch (error) {
          failure = error;
          rpc.cancel();
        }
      },
      onEnd(status) {
        if (failure) return reject(failure);
        if (status.code !== 0) return reject(new SluiceError(status));
        if (!listed || asked.length) {
          return reject(new SluiceError({ code: 2, message: "reflection ended before answering" }));
        }
        for (const service of services) {
          const described = descriptors.services.get(service.name);
          if (described) service.methods = described.methods;
          else if (!service.error) service.error = "not described by the reflection answer";
        }
        resolve({ services, descriptors, version });
      },
    });
    rpc.send({ listServices: "" });
  });
}

function reflectionError({ errorCode, errorMessage }, request) {
  return new SluiceError({ code: errorCode ?? 2, message: `reflection ${request}: ${errorMessage ?? ""}` });
}

// --- gRPC-Web and Connect over fetch ------------------------------------------------------------
//
// The same methods answer gRPC-Web and Connect (README: "gRPC-Web", "Connect"). With their JSON
// codecs (`application/grpc-web+json`, `application/json` / `application/connect+json`) a page
// needs no protobuf library: messages are the same proto3 JSON as on the WebSocket. fetch sends a
// request body whole, so client streaming and bidi send every message first (full duplex needs
// HTTP/2 and a client that streams requests).

/** The 5-byte prefix both protocols put before a message: flags, then a big-endian length. */
function envelope(flags, bytes) {
  const out = new Uint8Array(5 + bytes.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, bytes.length);
  out.set(bytes, 5);
  return out;
}

/** Reads envelopes from a streaming fetch body, calling `each(flags, bytes)` as each completes. */
async function readEnvelopes(body, each) {
  const reader = body.getReader();
  let buffer = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (value) {
      const joined = new Uint8Array(buffer.length + value.length);
      joined.set(buffer);
      joined.set(value, buffer.length);
      buffer = joined;
      while (buffer.length >= 5) {
        const length = new DataView(buffer.buffer, buffer.byteOffset).getUint32(1);
        if (buffer.length < 5 + length) break;
        each(buffer[0], buffer.slice(5, 5 + length));
        buffer = buffer.slice(5 + length);
      }
    }
    if (done) return buffer.length;
  }
}

const CONNECT_CODES = {
  canceled: 1, unknown: 2, invalid_argument: 3, deadline_exceeded: 4, not_found: 5, already_exists: 6,
  permission_denied: 7, resource_exhausted: 8, failed_precondition: 9, aborted: 10, out_of_range: 11,
  unimplemented: 12, internal: 13, unavailable: 14, data_loss: 15, unauthenticated: 16,
};

/** A Connect error object ({ code: "not_found", message, details }) as a google.rpc.Status. */
function connectStatus(error) {
  return { code: CONNECT_CODES[error?.code] ?? 2, message: error?.message ?? "", details: error?.details ?? [] };
}

/**
 * callFetch(baseUrl, path, protocol, messages, options) -> Promise<status>
 *   One RPC over gRPC-Web (`protocol` "grpc-web") or Connect ("connect"), JSON codecs, with fetch.
 *   messages   the request messages (one for unary and server streaming)
 *   options:   { kind: "unary" | "server streaming" | "client streaming" | "bidirectional",
 *                headers, timeoutMs, signal, onHeaders(headers), onMessage(message) }
 *   Resolves to the final google.rpc.Status { code, message, details }: code 0 is OK; gRPC-Web's
 *   trailers and Connect's error JSON and end-stream envelope are read into the same shape.
 */
export async function callFetch(baseUrl, path, protocol, messages, options = {}) {
  const { kind = "unary", headers = {}, timeoutMs, signal, onHeaders, onMessage } = options;
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const connectUnary = protocol === "connect" && kind === "unary";
  const request = { method: "POST", signal, headers: { ...headers } };
  if (protocol === "grpc-web") {
    request.headers["Content-Type"] = "application/grpc-web+json";
    request.headers["X-Grpc-Web"] = "1";
    if (timeoutMs) request.headers["grpc-timeout"] = `${Math.ceil(timeoutMs)}m`;
  } else {
    request.headers["Content-Type"] = connectUnary ? "application/json" : "application/connect+json";
    request.headers["Connect-Protocol-Version"] = "1";
    if (timeoutMs) request.headers["Connect-Timeout-Ms"] = `${Math.ceil(timeoutMs)}`;
  }
  if (connectUnary) {
    request.body = JSON.stringify(messages[0] ?? {});
  } else {
    const parts = messages.map((m) => envelope(0, encoder.encode(JSON.stringify(m ?? {}))));
    request.body = new Blob(parts);
  }
  let response;
  try {
    response = await fetch(httpBase(baseUrl) + path, request);
  } catch (error) {
    if (error?.name === "AbortError") return { code: 1, message: "aborted" };
    return { code: 14, message: `network error (gateway unreachable or CORS refused): ${error.message}` };
  }
  const head = {};
  response.headers.forEach((value, key) => { (head[key] ??= []).push(value); });
  onHeaders?.(head);
  if (connectUnary) {
    const text = await response.text();
    let body;
    try {
      body = text ? JSON.parse(text) : {};
    } catch {
      return { code: 2, message: `HTTP ${response.status}: ${text.slice(0, 200)}` };
    }
    if (!response.ok) return connectStatus(body);
    onMessage?.(body);
    return { code: 0, message: "" };
  }
  if (protocol === "grpc-web" && response.headers.get("grpc-status") !== null) {
    // A trailers-only answer: the status is in the headers, there is no body.
    return { code: Number(response.headers.get("grpc-status")),
             message: decodeURIComponent(response.headers.get("grpc-message") ?? "") };
  }
  if (!response.ok || !response.body) {
    return { code: 2, message: `HTTP ${response.status} ${response.statusText}` };
  }
  let status;
  const left = await readEnvelopes(response.body, (flags, bytes) => {
    const text = decoder.decode(bytes);
    if (protocol === "grpc-web" && flags & 0x80) {
      const trailers = {};
      for (const line of text.split("\r\n")) {
        const at = line.indexOf(":");
        if (at > 0) trailers[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
      }
      status = { code: Number(trailers["grpc-status"] ?? 2),
                 message: decodeURIComponent(trailers["grpc-message"] ?? "") };
    } else if (protocol === "connect" && flags & 0x02) {
      const end = text ? JSON.parse(text) : {};
      status = end.error ? connectStatus(end.error) : { code: 0, message: "" };
    } else {
      onMessage?.(JSON.parse(text));
    }
  });
  if (status) return status;
  return { code: 13, message: left ? "the response ended inside a message" : "the response ended without a status" };
}
