// The Sluice page: one section per hosted RPC, then an explorer of every method the gateway
// serves (from server reflection); all built on sluice-client.js.
import { openRpc, callUnary, callFetch, codeName, httpBase, wsBase, reflect } from "./sluice-client.js";
import { loadRoutes, restRequest } from "./explorer-rest.js";

const $ = (id) => document.getElementById(id);

// Every form is handled here; none of them navigates.
document.addEventListener("submit", (event) => event.preventDefault(), true);

/** The gateway base URL from the Gateway field (empty = this page's origin). */
function gateway() {
  return httpBase($("gateway").value);
}

function el(tag, className, text, testid) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  if (testid) node.dataset.testid = testid;
  return node;
}

function statusText(status) {
  let text = codeName(status.code);
  if (status.message) text += `: ${status.message}`;
  if (status.details?.length) text += ` · details ${JSON.stringify(status.details)}`;
  if (status.trailers && Object.keys(status.trailers).length) text += ` · trailers ${JSON.stringify(status.trailers)}`;
  return text;
}

/** Shows a connection state ("connecting", "open", "half-closed", "ended", "closed") in `out`. */
function showState(out, state, rpc) {
  if (state === "closed") {
    // The socket closed after $end (or without one): keep "ended", add the Close code. A stream of
    // the multiplexed session has none: its socket stays open for the page's other RPCs.
    out.dataset.state = "ended";
    const shared = rpc.closeCode == null && rpc.id != null;
    out.dataset.close = shared ? "shared" : String(rpc.closeCode);
    out.textContent = `ended with code ${codeName(rpc.status.code)} · ${shared ? `stream ${rpc.id} of the shared socket` : `Close ${rpc.closeCode}`}`;
    return;
  }
  out.dataset.state = state;
  delete out.dataset.close;
  if (state === "ended") {
    out.dataset.code = String(rpc.status.code);
    out.textContent = `ended with code ${codeName(rpc.status.code)}`;
  } else {
    delete out.dataset.code;
    out.textContent = state;
  }
}

/** Shows a final status (or a local error) in `out`. */
function showStatus(out, status) {
  if (!status) {
    out.textContent = "—";
    out.className = "";
    delete out.dataset.code;
    return;
  }
  out.textContent = statusText(status);
  out.className = status.code === 0 ? "ok" : "error";
  out.dataset.code = String(status.code);
}

function showError(out, error) {
  out.textContent = `error: ${error.message}`;
  out.className = "error";
}

/** Wires the standard callbacks of a section: state, status and its own handlers. */
function sectionRpc(prefix, path, handlers = {}) {
  const state = $(`${prefix}-state`);
  const status = $(`${prefix}-status`);
  showStatus(status, null);
  return openRpc(gateway(), path, {
    ...handlers,
    onState(s, rpc) {
      showState(state, s, rpc);
      handlers.onState?.(s, rpc);
    },
    onEnd(st) {
      showStatus(status, st);
      handlers.onEnd?.(st);
    },
  });
}

const nextValue = (input) => { input.value = String(Number(input.value || 0) + 1); };
const point = (prefix) => ({ pt: { name: $(`${prefix}-name`).value, value: Number($(`${prefix}-value`).value || 0) } });

// --- List: server streaming, with a live chart -------------------------------------------------

const chart = { points: [] };

/** Round tick values covering [min, max]: about `count` steps of 1, 2, 2.5 or 5 × 10^k. */
function ticks(min, max, count = 4) {
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw);
  const out = [];
  for (let v = Math.floor(min / step) * step; v < max + step - 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function drawChart() {
  const canvas = $("list-chart");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width;
  const h = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const pts = chart.points;
  canvas.dataset.points = String(pts.length);
  canvas.setAttribute("aria-label", pts.length
    ? `Line chart of List values over time: ${pts.map((p) => `${p.v} at ${p.t.toFixed(1)} s`).join(", ")}`
    : "Line chart of List values over time: no data yet");

  const pad = { l: 44, r: 22, t: 12, b: 26 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  g.font = "11px system-ui, sans-serif";
  g.strokeStyle = "#d8dce3";
  g.fillStyle = "#5c6475";
  g.lineWidth = 1;
  if (!pts.length) {
    g.textAlign = "center";
    g.fillText("no data yet — press Start", w / 2, h / 2);
    return;
  }
  // axes: round tick values (1, 2, 2.5 or 5 × 10^k apart) spanning the data
  const tTicks = ticks(0, Math.max(1, ...pts.map((p) => p.t)));
  let vMin = Math.min(...pts.map((p) => p.v));
  let vMax = Math.max(...pts.map((p) => p.v));
  if (vMin === vMax) { vMin -= 1; vMax += 1; }
  const vTicks = ticks(vMin, vMax);
  [vMin, vMax] = [vTicks[0], vTicks[vTicks.length - 1]];
  const tMax = tTicks[tTicks.length - 1];
  const x = (t) => pad.l + (t / tMax) * pw;
  const y = (v) => pad.t + ph - ((v - vMin) / (vMax - vMin)) * ph;

  g.textAlign = "right"; g.textBaseline = "middle";
  for (const v of vTicks) {
    const yy = Math.round(y(v)) + 0.5;
    g.beginPath(); g.moveTo(pad.l, yy); g.lineTo(pad.l + pw, yy); g.stroke();
    g.fillText(String(v), pad.l - 6, yy);
  }
  g.textAlign = "center"; g.textBaseline = "top";
  for (const t of tTicks) g.fillText(`${t} s`, x(t), pad.t + ph + 6);
  // line and points
  g.strokeStyle = "#1f6feb";
  g.lineWidth = 2;
  g.beginPath();
  pts.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.v)) : g.moveTo(x(p.t), y(p.v))));
  g.stroke();
  g.fillStyle = "#1f6feb";
  for (const p of pts) { g.beginPath(); g.arc(x(p.t), y(p.v), 3.5, 0, 2 * Math.PI); g.fill(); }
}

let listRpc = null;
$("list-form").addEventListener("submit", () => {
  const items = $("list-items");
  items.replaceChildren();
  chart.points = [];
  drawChart();
  const started = performance.now();
  try {
    listRpc = sectionRpc("list", "/proto.StreamService/List", {
      singleRequest: true,
      onMessage(m) {
        const t = (performance.now() - started) / 1000;
        const v = Number(m.pt?.value ?? 0);
        const item = el("li", null, `${m.pt?.name ?? ""} = ${v}  (+${t.toFixed(2)} s)`, "list-item");
        item.dataset.value = String(v);
        item.dataset.t = t.toFixed(3);
        items.append(item);
        item.scrollIntoView({ block: "nearest" });
        chart.points.push({ t, v });
        drawChart();
      },
      onState(s) {
        $("list-start").disabled = s !== "ended" && s !== "closed";
        $("list-cancel").disabled = s === "ended" || s === "closed";
      },
    });
    listRpc.send(point("list"));
  } catch (error) {
    showError($("list-status"), error);
  }
});
$("list-cancel").addEventListener("click", () => listRpc?.cancel());
window.addEventListener("resize", drawChart);

// --- Record: client streaming ------------------------------------------------------------------

let recordRpc = null;
const live = (rpc) => rpc && (rpc.state === "connecting" || rpc.state === "open");

$("record-form").addEventListener("submit", () => {
  try {
    if (!live(recordRpc)) {
      $("record-sent").replaceChildren();
      $("record-count").textContent = "0";
      $("record-response").textContent = "—";
      recordRpc = sectionRpc("record", "/proto.StreamService/Record", {
        onMessage(m) { $("record-response").textContent = JSON.stringify(m); },
        onState(s) { $("record-finish").disabled = s !== "connecting" && s !== "open"; },
      });
    }
    const message = point("record");
    recordRpc.send(message);
    $("record-sent").append(el("li", null, JSON.stringify(message), "record-sent-item"));
    $("record-count").textContent = String($("record-sent").children.length);
    nextValue($("record-value"));
  } catch (error) {
    showError($("record-status"), error);
  }
});
$("record-finish").addEventListener("click", () => recordRpc?.end());

// --- Route and DataService: bidirectional chats -------------------------------------------------

function chat(prefix, path, message, show) {
  let rpc = null;
  const log = $(`${prefix}-log`);
  const add = (cls, text) => {
    log.append(el("li", cls, text, `${prefix}-${cls.split(" ")[0]}`));
    log.lastChild.scrollIntoView({ block: "nearest" });
  };
  $(`${prefix}-form`).addEventListener("submit", () => {
    try {
      if (!live(rpc)) {
        log.replaceChildren();
        rpc = sectionRpc(prefix, path, {
          onMessage: (m) => add("in", show(m)),
          onEnd: (st) => add(st.code === 0 ? "end" : "end error", `$end ${statusText(st)}`),
          onState: (s) => { $(`${prefix}-finish`).disabled = s !== "connecting" && s !== "open"; },
        });
      }
      const m = message();
      rpc.send(m);
      add("out", JSON.stringify(m));
    } catch (error) {
      showError($(`${prefix}-status`), error);
    }
  });
  $(`${prefix}-finish`).addEventListener("click", () => rpc?.end());
}

chat("route", "/proto.StreamService/Route", () => {
  const m = point("route");
  nextValue($("route-value"));
  return m;
}, (m) => `${m.pt?.name}: ${m.pt?.value}`);
chat("data", "/DataService/BidirectionalStream", () => ({ data: $("data-text").value }), (m) => m.result);

// --- SayHi: unary over HTTP JSON and over WebSocket ---------------------------------------------

$("sayhi-form").addEventListener("submit", async () => {
  const out = $("sayhi-fetch-result");
  out.textContent = "calling…";
  out.className = "";
  try {
    const response = await callUnary(gateway(), "/hello.UserService/SayHi", { name: $("sayhi-name").value });
    out.textContent = response.result;
    out.className = "ok";
  } catch (error) {
    const http = error.httpStatus ? ` (HTTP ${error.httpStatus})` : "";
    out.textContent = `error ${codeName(error.code ?? 2)}: ${error.message}${http}`;
    out.className = "error";
  }
});

$("sayhi-ws").addEventListener("click", () => {
  const out = $("sayhi-ws-result");
  out.textContent = "calling…";
  out.className = "";
  try {
    const rpc = sectionRpc("sayhi", "/hello.UserService/SayHi", {
      singleRequest: true,
      onMessage(m) { out.textContent = m.result; out.className = "ok"; },
      onEnd(st) {
        if (st.code !== 0) { out.textContent = `error ${statusText(st)}`; out.className = "error"; }
      },
    });
    rpc.send({ name: $("sayhi-name").value });
  } catch (error) {
    showError(out, error);
  }
});

// --- Raw frames -------------------------------------------------------------------------------

let rawRpc = null;
const rawLog = (cls, text) => {
  const log = $("raw-log");
  log.append(el("li", cls, text, `raw-${cls}`));
  log.lastChild.scrollIntoView({ block: "nearest" });
};

function rawSession() {
  if (rawRpc && rawRpc.state !== "ended" && rawRpc.state !== "closed") return rawRpc;
  let path = $("raw-path").value.trim();
  if (!path.startsWith("/")) path = `/${path}`;
  rawLog("note", `open ${path}`);
  // Raw frames are the single-RPC protocol's, on a socket of their own: a malformed one ends
  // only this session, not the page's multiplexed one.
  rawRpc = sectionRpc("raw", path, {
    mux: false,
    onFrame: (text, dir) => rawLog(dir, text),
    onState: (s, rpc) => { if (s === "closed") rawLog("note", `closed ${rpc.closeCode}${rpc.closeReason ? ` ${rpc.closeReason}` : ""}`); },
  });
  return rawRpc;
}

$("raw-form").addEventListener("submit", () => {
  try {
    rawSession().sendRaw($("raw-text").value);
  } catch (error) {
    showError($("raw-status"), error);
  }
});
$("raw-end").addEventListener("click", () => {
  try { rawSession().end(); } catch (error) { showError($("raw-status"), error); }
});
$("raw-cancel").addEventListener("click", () => rawRpc?.cancel());
$("raw-clear").addEventListener("click", () => $("raw-log").replaceChildren());

// --- Explorer: every method the gateway serves, from server reflection ----------------------------

const explorer = {
  generation: 0, // bumps with every reflection load, so a late answer of an old one is dropped
  descriptors: null,
  routes: new Map(), // REST routes by gRPC path (the gateway's /openapi.json)
  method: null, // the picked method
  run: null, // the current run: { method, base, rpc, sent: [frame texts] }
};

function setLoadState(state, text) {
  const out = $("explorer-load-state");
  out.dataset.state = state;
  out.textContent = text;
}

async function loadExplorer() {
  const generation = ++explorer.generation;
  setLoadState("loading", "loading…");
  try {
    const [{ services, descriptors, version }, routes] = await Promise.all([reflect(gateway()), loadRoutes(gateway())]);
    if (generation !== explorer.generation) return;
    explorer.descriptors = descriptors;
    explorer.routes = routes;
    showServices(services);
    const methods = services.reduce((n, s) => n + s.methods.length, 0);
    const rest = [...routes.values()].reduce((n, list) => n + list.length, 0);
    setLoadState("ready", `${services.length} services, ${methods} methods, ${rest} REST routes · reflection ${version}`);
  } catch (error) {
    if (generation !== explorer.generation) return;
    const code = error.code != null ? `${codeName(error.code)}: ` : "";
    setLoadState("error", `error: ${code}${error.message}`);
  }
}

function showServices(services) {
  const tree = $("explorer-services");
  tree.replaceChildren();
  for (const service of services) {
    const item = el("li", null, null, "explorer-service");
    item.dataset.service = service.name;
    const name = el("span", "service-name");
    // A long dotted name may wrap after a dot, not inside a word.
    service.name.split(".").forEach((part, i) => {
      if (i) name.append(".", document.createElement("wbr"));
      name.append(part);
    });
    item.append(name);
    if (service.error) item.append(el("span", "error", ` ${service.error}`));
    const methods = el("ul");
    for (const method of service.methods) {
      const button = el("button", "method", method.name, "explorer-method");
      button.type = "button";
      button.dataset.path = method.path;
      button.dataset.kind = method.kind;
      button.title = `${method.inputType} → ${method.outputType}`;
      button.setAttribute("aria-pressed", String(method.path === explorer.method?.path));
      button.addEventListener("click", () => pickMethod(method));
      const row = el("li");
      row.append(button, el("span", "kind", method.kind));
      methods.append(row);
    }
    item.append(methods);
    tree.append(item);
  }
  // After a reload, the picked method keeps its edited request if it is still served.
  const still = services.flatMap((s) => s.methods).find((m) => m.path === explorer.method?.path);
  if (still) explorer.method = still;
}


function pickMethod(method) {
  explorer.method = method;
  for (const button of document.querySelectorAll('#explorer-services [data-testid="explorer-method"]')) {
    button.setAttribute("aria-pressed", String(button.dataset.path === method.path));
  }
  $("explorer-path").textContent = method.path;
  $("explorer-kind").textContent = method.kind;
  $("explorer-kind").dataset.kind = method.kind;
  $("explorer-types").textContent = `${method.clientStreaming ? "stream " : ""}${method.inputType} → `
    + `${method.serverStreaming ? "stream " : ""}${method.outputType}`;
  const hints = [];
  if (method.clientStreaming) {
    hints.push("One message per line (NDJSON), or any sequence of JSON objects. Run sends them all, then "
      + "{\"$end\":true}; with \"keep the stream open\" it sends them and waits: edit, Send more, Finish.");
  } else {
    hints.push("One JSON message; the gateway half-closes after it.");
  }
  hints.push("A first frame {\"$metadata\":{…},\"$timeoutMs\":N} is sent as it is.");
  const message = explorer.descriptors.messages.get(method.inputType);
  for (const [index, name] of (message?.oneofs ?? []).entries()) {
    const members = message.fields.filter((f) => f.oneofIndex === index && !f.proto3Optional);
    if (members.length) hints.push(`oneof ${name}: set one of ${members.map((f) => f.jsonName).join(", ")}.`);
  }
  $("explorer-help").textContent = hints.join(" ");
  $("explorer-keep-open-label").hidden = !method.clientStreaming;
  showRouteChoices(method);
  for (const id of ["explorer-request", "explorer-run", "explorer-reset"]) $(id).disabled = false;
  resetTemplate();
  showProblem(null);
}

/** The "over" choices: the three protocols, then each REST route of the method. */
function showRouteChoices(method) {
  const select = $("explorer-protocol");
  const chosen = select.value;
  for (const option of [...select.options]) if (option.value.startsWith("rest:")) option.remove();
  for (const [index, route] of (explorer.routes.get(method.path) ?? []).entries()) {
    const option = el("option", null, `REST ${route.method} ${route.path}`);
    option.value = `rest:${index}`;
    select.append(option);
  }
  if (![...select.options].some((o) => o.value === chosen)) select.value = "websocket";
}

function resetTemplate() {
  const method = explorer.method;
  if (!method) return;
  const template = explorer.descriptors.template(method.inputType);
  // Streams get one message per line, so that a line can be copied to send several.
  const text = method.clientStreaming ? JSON.stringify(template) : JSON.stringify(template, null, 2);
  const editor = $("explorer-request");
  editor.value = text;
  editor.rows = Math.min(16, Math.max(3, text.split("\n").length + 1));
}

function showProblem(message) {
  $("explorer-problem").hidden = !message;
  $("explorer-problem").textContent = message ?? "";
}

/**
 * Splits the editor's text into JSON objects, one frame each, every one minified but otherwise
 * exactly as typed (so a 64-bit number keeps its digits). Throws a readable error.
 */
function splitFrames(text) {
  const frames = [];
  const lineAt = (i) => text.slice(0, i).split("\n").length;
  let i = 0;
  for (;;) {
    while (i < text.length && " \t\r\n".includes(text[i])) i++;
    if (i >= text.length) return frames;
    const start = i;
    if (text[i] !== "{") throw new Error(`line ${lineAt(i)}: expected a JSON object ({…}), found "${text[i]}"`);
    let out = "";
    let depth = 0;
    let inString = false;
    for (; i < text.length; i++) {
      const c = text[i];
      if (inString) {
        out += c;
        if (c === "\\") out += text[++i] ?? "";
        else if (c === '"') inString = false;
        continue;
      }
      if (" \t\r\n".includes(c)) continue;
      out += c;
      if (c === '"') inString = true;
      else if (c === "{" || c === "[") depth++;
      else if ((c === "}" || c === "]") && --depth === 0) break;
    }
    i++;
    const n = frames.length + 1;
    if (depth !== 0) throw new Error(`message ${n} (line ${lineAt(start)}) is not finished: a } is missing`);
    let value;
    try {
      value = JSON.parse(out);
    } catch (error) {
      throw new Error(`message ${n} (line ${lineAt(start)}) is not valid JSON: ${error.message}`);
    }
    frames.push({ text: out, control: Object.keys(value).some((k) => k.startsWith("$")) });
  }
}

function editorFrames(method, { more = false } = {}) {
  const frames = splitFrames($("explorer-request").value);
  const messages = frames.filter((f) => !f.control).length;
  if (!method.clientStreaming && messages !== 1) {
    throw new Error(`${method.kind} methods take exactly one request message; the editor holds ${messages}`);
  }
  if (more && !frames.length) throw new Error("nothing to send: the editor is empty");
  return frames;
}

function explorerLog(cls, text, testid) {
  const log = $("explorer-log");
  log.append(el("li", cls, text, testid));
  log.lastChild.scrollIntoView({ block: "nearest" });
}

function runMethod() {
  const method = explorer.method;
  if (!method) return;
  let frames;
  try {
    frames = editorFrames(method);
  } catch (error) {
    showProblem(error.message);
    return;
  }
  showProblem(null);
  if (explorer.run?.rpc && !["ended", "closed"].includes(explorer.run.rpc.state)) explorer.run.rpc.cancel();
  explorer.run?.abort?.abort();
  const protocol = $("explorer-protocol").value;
  if (protocol.startsWith("rest:")) {
    runRest(method, frames, explorer.routes.get(method.path)?.[Number(protocol.slice(5))]);
    return;
  }
  if (protocol !== "websocket" && protocol !== "websocket-mux") {
    runFetch(method, frames, protocol);
    return;
  }

  // One socket per run (its frames are the single-RPC protocol's), or a stream of the page's
  // multiplexed session, whose start frame carries the editor's $metadata and $timeoutMs.
  const mux = protocol === "websocket-mux";
  const run = { method, base: gateway(), rpc: null, sent: [], count: 0, mux };
  const current = beginRun(run);
  showCommands(run);
  let sawEnd = false;
  const start = mux ? startOptions(frames) : {};
  run.rpc = openRpc(run.base, method.path, {
    ...start,
    mux,
    onFrame(text, direction) {
      if (!current()) return;
      if (direction === "out") {
        run.sent.push(text);
        explorerLog("out", text, "explorer-out");
        showCommands(run);
        return;
      }
      let frame = null;
      try { frame = JSON.parse(text); } catch { /* onEnd reports it */ }
      const end = mux ? frame?.end : frame?.$end;
      if (frame && end !== undefined) {
        sawEnd = true;
        explorerLog(end?.code === 0 ? "in end" : "in end error", text, "explorer-end");
      } else if (frame && (mux ? "headers" : "$headers") in frame) {
        explorerLog("in headers", text, "explorer-headers-frame");
      } else if (frame && "$pong" in frame) explorerLog("in", text, "explorer-pong");
      else if (mux && frame && "credit" in frame) explorerLog("in", text, "explorer-credit");
      else explorerLog("in", text, "explorer-response");
    },
    onHeaders(headers) {
      if (current()) $("explorer-headers").textContent = JSON.stringify(headers);
    },
    onMessage() {
      if (current()) $("explorer-count").textContent = String(++run.count);
    },
    onEnd(status) {
      if (!current()) return;
      showStatus($("explorer-status"), status);
      if (!sawEnd) explorerLog("note error", `no $end: ${statusText(status)}`, "explorer-note");
    },
    onState(state, rpc) {
      if (!current()) return;
      showState($("explorer-state"), state, rpc);
      const sending = method.clientStreaming && (state === "connecting" || state === "open");
      $("explorer-send").disabled = !sending;
      $("explorer-finish").disabled = !sending;
      $("explorer-cancel").disabled = state === "ended" || state === "closed";
    },
  });
  for (const frame of frames) sendFrame(run, frame);
  if (method.clientStreaming && !$("explorer-keep-open").checked) run.rpc.end();
}

/** The editor's $metadata and $timeoutMs, for a multiplexed stream's start frame. */
function startOptions(frames) {
  const options = {};
  for (const frame of frames.filter((f) => f.control)) {
    const value = JSON.parse(frame.text);
    if (value.$metadata) options.metadata = value.$metadata;
    if (value.$timeoutMs != null) options.timeoutMs = value.$timeoutMs;
  }
  return options;
}

/** Sends one of the editor's frames: as it is on a socket of its own; on a multiplexed stream, a
 * message as `message` and a control frame as what it asks for ($metadata and $timeoutMs went
 * into the start frame). */
function sendFrame(run, frame) {
  if (!run.mux || !frame.control) return run.rpc.sendRaw(frame.text);
  const value = JSON.parse(frame.text);
  if (value.$end) run.rpc.end();
  else if (value.$cancel) run.rpc.cancel();
  else if (value.$ping != null) run.rpc.ping(value.$ping);
}

/** Makes `run` the explorer's current run and clears what the last one showed; returns whether a
 * callback's run is still the current one (callbacks of an older run change nothing). */
function beginRun(run) {
  explorer.run = run;
  $("explorer-log").replaceChildren();
  $("explorer-headers").textContent = "—";
  $("explorer-count").textContent = "0";
  showStatus($("explorer-status"), null);
  return () => explorer.run === run;
}

/** A fetch run (gRPC-Web, Connect, REST) has sent its request: it can be cancelled, not added to. */
function fetchWaiting(text) {
  const state = $("explorer-state");
  state.dataset.state = "open";
  delete state.dataset.close;
  state.textContent = text;
  $("explorer-cancel").disabled = false;
  $("explorer-send").disabled = true;
  $("explorer-finish").disabled = true;
}

/** A fetch run ended with `status`: its last log line, the status, the state. */
function fetchEnded(status) {
  explorerLog(status.code === 0 ? "in end" : "in end error", JSON.stringify({ status }), "explorer-fetch-end");
  showStatus($("explorer-status"), status);
  const state = $("explorer-state");
  state.dataset.state = "ended";
  state.dataset.code = String(status.code);
  state.textContent = `ended with code ${codeName(status.code)}`;
  $("explorer-cancel").disabled = true;
}

/** A run over gRPC-Web or Connect (fetch): the editor's messages go in one request body; its
 * `$metadata` and `$timeoutMs` become headers. */
async function runFetch(method, frames, protocol) {
  const run = { method, base: gateway(), protocol, sent: [], count: 0, abort: new AbortController() };
  const current = beginRun(run);
  const headers = {};
  let timeoutMs;
  const messages = [];
  for (const frame of frames) {
    const value = JSON.parse(frame.text);
    if (!frame.control) {
      messages.push(value);
    } else {
      for (const [key, values] of Object.entries(value.$metadata ?? {})) headers[key] = [values].flat().join(", ");
      if (value.$timeoutMs != null) timeoutMs = value.$timeoutMs;
    }
    run.sent.push(frame.text);
    explorerLog("out", frame.text, "explorer-out");
  }
  showCommands(run);
  fetchWaiting(`${protocol}: waiting for the response`);
  const status = await callFetch(run.base, method.path, protocol, messages, {
    kind: method.kind, headers, timeoutMs, signal: run.abort.signal,
    onHeaders(head) {
      if (current()) $("explorer-headers").textContent = JSON.stringify(head);
    },
    onMessage(message) {
      if (!current()) return;
      explorerLog("in", JSON.stringify(message), "explorer-response");
      $("explorer-count").textContent = String(++run.count);
    },
  });
  if (current()) fetchEnded(status);
}

/** Whether a parsed JSON value is a google.rpc.Status object (a REST stream's failure, its last). */
const isStatus = (value) => value && typeof value === "object" && Number.isInteger(value.code)
  && typeof value.message === "string" && Object.keys(value).every((k) => ["code", "message", "details", "trailers"].includes(k));

/** A run over a REST route (fetch): the request built from the editor's messages
 * (`restRequest`), `$metadata` as headers; a stream's answer read line by line as it arrives. */
async function runRest(method, frames, route) {
  if (!route) return showProblem("the gateway no longer has this route: Reload");
  const run = { method, base: gateway(), rest: null, sent: [], count: 0, abort: new AbortController() };
  const current = beginRun(run);
  const headers = {};
  const messages = [];
  for (const frame of frames) {
    const value = JSON.parse(frame.text);
    if (!frame.control) messages.push(value);
    else for (const [key, values] of Object.entries(value.$metadata ?? {})) headers[key] = [values].flat().join(", ");
  }
  const request = restRequest(route, messages, { stream: method.clientStreaming });
  if (request.contentType) headers["Content-Type"] = request.contentType;
  if (method.serverStreaming) headers.Accept = "application/x-ndjson";
  run.rest = { request, headers };
  run.sent = [`${request.method} ${request.url}`];
  explorerLog("out", request.body == null ? run.sent[0] : `${run.sent[0]}\n${request.body.trimEnd()}`, "explorer-out");
  showCommands(run);
  fetchWaiting("REST: waiting for the response");
  let status = { code: 0, message: "" };
  try {
    const response = await fetch(run.base + request.url, {
      method: request.method, headers, body: request.body ?? undefined, signal: run.abort.signal,
    });
    const head = {};
    response.headers.forEach((value, name) => { if (name.startsWith("grpc-metadata-")) head[name.slice(14)] = value; });
    if (current()) $("explorer-headers").textContent = `HTTP ${response.status} ${JSON.stringify(head)}`;
    const type = response.headers.get("Content-Type") ?? "";
    if (!response.ok) {
      const error = await response.json().catch(() => null);
      status = isStatus(error) ? error : { code: 2, message: `HTTP ${response.status}` };
    } else if (!type.startsWith("application/json") && !type.startsWith("application/x-ndjson")) {
      // google.api.HttpBody: the raw bytes, shown as text.
      const text = await response.text();
      if (current()) {
        explorerLog("in", `${type}: ${text.slice(0, 2000)}`, "explorer-response");
        $("explorer-count").textContent = String(++run.count);
      }
    } else {
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let pending = "";
      const line = (text) => {
        if (!text.trim() || !current()) return;
        const value = JSON.parse(text);
        if (method.serverStreaming && isStatus(value)) { status = value; return; }
        explorerLog("in", JSON.stringify(value), "explorer-response");
        $("explorer-count").textContent = String(++run.count);
      };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += value;
        const lines = pending.split("\n");
        pending = lines.pop();
        for (const text of lines) line(text);
      }
      line(pending);
    }
  } catch (error) {
    status = error.name === "AbortError" ? { code: 1, message: "cancelled" } : { code: 14, message: String(error.message) };
  }
  if (current()) fetchEnded(status);
}

$("explorer-form").addEventListener("submit", runMethod);
$("explorer-request").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    if (!$("explorer-run").disabled) runMethod();
  }
});
$("explorer-send").addEventListener("click", () => {
  const run = explorer.run;
  try {
    for (const frame of editorFrames(run.method, { more: true })) sendFrame(run, frame);
    showProblem(null);
  } catch (error) {
    showProblem(error.message);
  }
});
$("explorer-finish").addEventListener("click", () => explorer.run?.rpc.end());
$("explorer-cancel").addEventListener("click", () => {
  if (explorer.run?.abort) explorer.run.abort.abort();
  else explorer.run?.rpc.cancel();
});
$("explorer-reset").addEventListener("click", resetTemplate);
$("explorer-reload").addEventListener("click", loadExplorer);
$("gateway").addEventListener("change", loadExplorer);

// --- Explorer: the run as websocat and curl commands -----------------------------------------------

/** `text` as one POSIX shell word, in single quotes (each ' written as '\''). */
const quote = (text) => `'${text.replace(/'/g, "'\\''")}'`;
/** A URL or header as a shell word, quoted only when it needs to be. */
const word = (text) => (/^[\w@%+=:,./-]+$/.test(text) ? text : quote(text));

/** A command that writes `lines` to stdout, one per line (echo only when no backslash is involved:
 * some shells' echo interprets them). */
function feed(lines) {
  if (!lines.length) return "printf ''";
  if (lines.length === 1 && !lines[0].includes("\\")) return `echo ${quote(lines[0])}`;
  return `printf '%s\\n' ${lines.map(quote).join(" ")}`;
}

/** The curl arguments for a $metadata / $timeoutMs frame: the same request headers. */
function curlHeaders(control) {
  const out = [];
  for (const [key, values] of Object.entries(control.$metadata ?? {})) {
    for (const value of [values].flat()) {
      const name = key.toLowerCase() === "authorization" ? "Authorization" : `grpc-metadata-${key}`;
      out.push(`-H ${quote(`${name}: ${value}`)}`);
    }
  }
  if (control.$timeoutMs != null) out.push(`-H ${quote(`grpc-timeout: ${control.$timeoutMs}m`)}`);
  return out;
}

/** A multiplexed stream's frames for websocat, which reads as fast as the socket: without the
 * page's response credit. */
function websocatFrames(texts) {
  return texts.flatMap((text) => {
    const { credit, ...frame } = JSON.parse(text);
    if (credit !== undefined && !("start" in frame) && Object.keys(frame).length === 1) return [];
    return [JSON.stringify(frame)];
  });
}

/** A multiplexed stream's frames as the single-RPC session's (for its curl line): the start's
 * metadata and timeout as a $metadata frame, messages as they are, `end` as $end. */
function singleFrames(texts) {
  const out = [];
  for (const text of texts) {
    const frame = JSON.parse(text);
    if ("start" in frame && (frame.metadata || frame.timeoutMs != null)) {
      out.push(JSON.stringify({ $metadata: frame.metadata ?? {}, $timeoutMs: frame.timeoutMs }));
    }
    if ("message" in frame) out.push(JSON.stringify(frame.message));
    if (frame.end === true) out.push('{"$end":true}');
  }
  return out;
}

function curlCommand(run) {
  const { method } = run;
  const messages = [];
  const args = [];
  for (const text of run.sent) {
    const value = JSON.parse(text);
    if (Object.keys(value).some((k) => k.startsWith("$"))) args.push(...curlHeaders(value));
    else messages.push(text);
  }
  const url = word(httpBase(run.base) + method.path);
  if (method.serverStreaming) args.unshift("-N"); // print each line as it arrives
  if (!method.clientStreaming) return ["curl", ...args, "-d", quote(messages[0] ?? "{}"), url].join(" ");
  // Streams: an NDJSON body, one message per line; the end of the body is the half-close.
  return `${feed(messages)} | ${["curl", ...args, "-T -", "-H 'Content-Type: application/x-ndjson'", url].join(" ")}`;
}

/** `text` as printf's format: the 5-byte envelope prefix in octal escapes, then `%s` for the
 * message itself (passed as an argument, so nothing in it is read as an escape). */
function envelopeFormat(text) {
  const length = new TextEncoder().encode(text).length;
  const bytes = [0, (length >>> 24) & 255, (length >>> 16) & 255, (length >>> 8) & 255, length & 255];
  return bytes.map((b) => `\\${b.toString(8).padStart(3, "0")}`).join("") + "%s";
}

/** The curl line of a gRPC-Web or Connect run: the same request, the body built with printf where
 * it is enveloped. */
function fetchCommand(run) {
  const { method, protocol } = run;
  const messages = [];
  const args = [];
  for (const text of run.sent) {
    const value = JSON.parse(text);
    if (Object.keys(value).some((k) => k.startsWith("$"))) {
      for (const [key, values] of Object.entries(value.$metadata ?? {})) {
        args.push(`-H ${quote(`${key}: ${[values].flat().join(", ")}`)}`);
      }
      if (value.$timeoutMs != null) {
        args.push(protocol === "grpc-web" ? `-H 'grpc-timeout: ${value.$timeoutMs}m'`
          : `-H 'Connect-Timeout-Ms: ${value.$timeoutMs}'`);
      }
    } else {
      messages.push(text);
    }
  }
  const url = word(httpBase(run.base) + method.path);
  if (protocol === "connect" && method.kind === "unary") {
    return ["curl", "-H 'Content-Type: application/json'", "-H 'Connect-Protocol-Version: 1'", ...args,
      "-d", quote(messages[0] ?? "{}"), url].join(" ");
  }
  const type = protocol === "grpc-web" ? "application/grpc-web+json" : "application/connect+json";
  const body = `printf '${messages.map(envelopeFormat).join("")}' ${messages.map(quote).join(" ")}`;
  const headers = [`-H 'Content-Type: ${type}'`];
  if (protocol === "connect") headers.push("-H 'Connect-Protocol-Version: 1'");
  return `${body} | ${["curl", "-N", "--output -", ...headers, ...args, "--data-binary @-", url].join(" ")}`;
}

/** The curl line of a REST run: the same method, URL, headers and body. */
function restCommand(run) {
  const { request, headers } = run.rest;
  const args = ["curl"];
  if (run.method.serverStreaming) args.push("-N");
  if (request.method !== "GET" && !(request.method === "POST" && request.body != null)) args.push(`-X ${request.method}`);
  for (const [name, value] of Object.entries(headers)) {
    if (name !== "Content-Type" || request.contentType !== "application/json") args.push(`-H ${quote(`${name}: ${value}`)}`);
  }
  if (request.body == null) return [...args, word(httpBase(run.base) + request.url)].join(" ");
  if (request.contentType === "application/x-ndjson") {
    return `${feed(request.body.trimEnd().split("\n"))} | ${[...args, "--data-binary @-", word(httpBase(run.base) + request.url)].join(" ")}`;
  }
  return [...args, "-H 'Content-Type: application/json'", "-d", quote(request.body), word(httpBase(run.base) + request.url)].join(" ");
}

function showCommands(run) {
  const ready = run.sent.length > 0;
  if (run.rest) {
    $("explorer-websocat").textContent = "— (a WebSocket run shows its websocat line)";
    $("explorer-curl").textContent = restCommand(run);
    $("explorer-copy-websocat").disabled = true;
    $("explorer-copy-curl").disabled = false;
    return;
  }
  if (run.protocol) {
    $("explorer-websocat").textContent = "— (a WebSocket run shows its websocat line)";
    $("explorer-curl").textContent = ready ? fetchCommand(run) : "—";
    $("explorer-copy-websocat").disabled = true;
    $("explorer-copy-curl").disabled = !ready;
    return;
  }
  const url = run.mux ? `${wsBase(run.base)}/` : wsBase(run.base) + run.method.path;
  const lines = run.mux ? websocatFrames(run.sent) : run.sent;
  $("explorer-websocat").textContent = ready ? `${feed(lines)} | websocat ${word(url)}` : "— (nothing sent yet)";
  $("explorer-curl").textContent = ready ? curlCommand(run.mux ? { ...run, sent: singleFrames(run.sent) } : run) : "—";
  $("explorer-copy-websocat").disabled = !ready;
  $("explorer-copy-curl").disabled = !ready;
}

async function copyText(id, button) {
  const text = $(id).textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (an insecure origin): copy the selection the old way.
    const range = document.createRange();
    range.selectNodeContents($(id));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    document.execCommand("copy");
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}
$("explorer-copy-websocat").addEventListener("click", (e) => copyText("explorer-websocat", e.currentTarget));
$("explorer-copy-curl").addEventListener("click", (e) => copyText("explorer-curl", e.currentTarget));

// --- start ----------------------------------------------------------------------------------------

const fromQuery = new URLSearchParams(location.search).get("gateway");
$("gateway").value = fromQuery || (location.protocol.startsWith("http") ? location.origin : "http://127.0.0.1:8080");
drawChart();
loadExplorer();
$("page-state").textContent = "ready";
$("page-state").dataset.ready = "true";
