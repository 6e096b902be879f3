// The Sluice page: one section per hosted RPC, all built on sluice-client.js.
import { openRpc, callUnary, codeName, httpBase } from "./sluice-client.js";

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
    // The socket closed after $end (or without one): keep "ended", add the Close code.
    out.dataset.state = "ended";
    out.dataset.close = String(rpc.closeCode);
    out.textContent = `ended with code ${codeName(rpc.status.code)} · Close ${rpc.closeCode}`;
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
  rawRpc = sectionRpc("raw", path, {
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

// --- start ----------------------------------------------------------------------------------------

const fromQuery = new URLSearchParams(location.search).get("gateway");
$("gateway").value = fromQuery || (location.protocol.startsWith("http") ? location.origin : "http://127.0.0.1:8080");
drawChart();
$("page-state").textContent = "ready";
$("page-state").dataset.ready = "true";
