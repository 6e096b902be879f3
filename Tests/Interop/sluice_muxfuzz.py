"""The multiplexed-session family of the live-gateway fuzzer (sluice_fuzz.py registers it as "mux").

Each case is one WebSocket on `/` (raw frames, sluice_fuzz.raw_ws_case): a random interleaving of
streams of the hosted methods (and unknown ones), their ids integers and strings, fresh or reused;
`start` frames with and without metadata (valid and not), timeouts, credit (0 included, and bad
values), a message and `end`; `message` frames valid and garbage; `end`, `cancel`, `credit` (0,
huge, negative, fractional), pings, unknown keys, late frames for ids that are not open; and now
and then what ends the session (a frame that is not JSON or not an object, a binary frame, a frame
without a readable id). The client then sends Close. Invariants:

- the handshake is answered 101, every server frame is a JSON object with an `id` (or a `pong`),
  and the session ends with the server's Close and TCP's end within the timeout;
- the Close is 1000, or 4400 when the case sent a frame that breaks the session, or 4409 when a
  `start` reused an id that may still have been open;
- each `start` gets exactly one `end` (with 1000), or at most one (after 4400 or 4409); an `end`
  is a status object with an integer `code` from 0 to 16;
- no stream sends a `message` or `headers` frame after its last `end`, unless it was started again.
"""
import json
import os

import sluice_fuzz as fz

METHODS = [
    ("/proto.StreamService/List", "list"),
    ("/proto.StreamService/Record", "record"),
    ("/proto.StreamService/Route", "route"),
    ("/hello.UserService/SayHi", "sayhi"),
    ("/DataService/BidirectionalStream", "data"),
    ("/grpc.health.v1.Health/Check", "health"),
    ("/nope.Missing/Method", "unknown"),
    ("/proto.StreamService/Nope", "unknown"),
]
GARBAGE = ['{"pt":{"value":"x"}}', '{"nope":1}', "[1]", '"text"', "null", '{"pt":' * 40 + "1" + "}" * 40,
           '{"name":' + '"' + "z" * 3000 + '"}', "1e400", '{"pt":{"value":99999999999}}']
BAD_CREDIT = ["-1", "1.5", '"3"', "null", "99999999999999999999", "true", "1e3"]
TIMEOUTS = ["0", "50", "5000", "-1", '"x"']
LATE = ['"end":true', '"cancel":true', '"credit":2', '"message":{}']
BAD_IDS = ["-1", "1.5", '"' + "x" * 65 + '"', "9007199254740992", "null", "[1]", "{}", "true", "1e2"]


def message_for(rng, kind):
    if rng.random() < 0.2:
        return rng.choice(GARBAGE)
    if kind in ("sayhi",):
        return json.dumps({"name": fz.random_name(rng)})
    if kind == "data":
        return json.dumps({"data": fz.random_name(rng)})
    if kind == "health":
        return "{}"
    return json.dumps({"pt": {"name": fz.random_name(rng), "value": fz.random_int32(rng)}})


def id_text(stream_id):
    return json.dumps(stream_id)


def mux_case(rng, index, port_ref, max_bytes):
    frames = []        # (bytes of one client frame, what it is)
    started = {}       # id text -> starts sent
    kinds = {}         # id text -> method kind of its last start
    breaks = False     # a frame that ends the session with 4400
    reused = False     # a start whose id had been started before (4409 possible)
    fresh = iter(range(1, 10_000))

    def send(payload, what):
        data = payload if isinstance(payload, bytes) else payload.encode()
        frames.append((fz.text(data), what))

    for _ in range(rng.randint(1, 24)):
        roll = rng.random()
        known = list(started)
        if roll < 0.3 or not known:
            if known and rng.random() < 0.1:
                sid = rng.choice(known)
                reused = True
            else:
                n = next(fresh)
                sid = id_text(n if rng.random() < 0.6 else f"s{n}")
            path, kind = rng.choice(METHODS)
            frame = [f'"id":{sid}', f'"start":{json.dumps(path)}']
            if rng.random() < 0.2:
                frame.append(rng.choice(['"metadata":{"x-a":"b"}', '"metadata":{"grpc-timeout":"1S"}',
                                         '"metadata":{"x-b":["1","2"]}', '"metadata":5', '"metadata":{"Bad Key":"v"}']))
            if rng.random() < 0.15:
                frame.append('"timeoutMs":' + rng.choice(TIMEOUTS))
            if rng.random() < 0.3:
                frame.append(f'"credit":{rng.choice(["0", "1", "2", "32"] + BAD_CREDIT[:2])}')
            if rng.random() < 0.5:
                frame.append(f'"message":{message_for(rng, kind)}')
            if rng.random() < 0.3:
                frame.append('"end":true')
            if rng.random() < 0.05:
                frame.append('"bogus":1')
            started[sid] = started.get(sid, 0) + 1
            kinds[sid] = kind
            send("{" + ",".join(frame) + "}", f"start {sid} {path}")
        elif roll < 0.6:
            sid = rng.choice(known)
            extra = ',"end":true' if rng.random() < 0.1 else ""
            send(f'{{"id":{sid},"message":{message_for(rng, kinds[sid])}{extra}}}', f"message {sid}")
        elif roll < 0.7:
            send(f'{{"id":{rng.choice(known)},"end":true}}', "end")
        elif roll < 0.75:
            send(f'{{"id":{rng.choice(known)},"cancel":true}}', "cancel")
        elif roll < 0.85:
            value = rng.choice(["1", "3", "100", "0"] + BAD_CREDIT)
            send(f'{{"id":{rng.choice(known)},"credit":{value}}}', "credit")
        elif roll < 0.9:
            send(f'{{"ping":{rng.randint(0, 99)}}}', "ping")
        elif roll < 0.94:
            late = id_text(rng.choice([777777, "never"]))
            send(f'{{"id":{late},{rng.choice(LATE)}}}', "late")
        elif roll < 0.985:
            send(f'{{"id":{rng.choice(known)},"what":1}}', "unknown key")
        else:
            breaks = True
            choice = rng.randrange(6)
            if choice == 0:
                send(b"not json", "not json")
            elif choice == 1:
                frames.append((fz.ws_frame(2, os.urandom(8)), "binary"))
            elif choice == 2:
                send('{"message":{}}', "no id")
            elif choice == 3:
                send(f'{{"id":{rng.choice(BAD_IDS)},"end":true}}', "bad id")
            elif choice == 4:
                send("[1,2,3]", "array")
            else:
                send(b"\xff\xfe", "invalid UTF-8")
    chunks = [frame for frame, _ in frames] + [fz.ws_frame(8, b"\x03\xe8")]
    allowed = {1000}
    if breaks:
        allowed.add(4400)
    if reused:
        allowed.add(4409)
    description = f"mux: {len(frames)} frames: " + "; ".join(what for _, what in frames)[:600]

    async def run():
        return await fz.raw_ws_case(port_ref(), "/", chunks, client_closes=True)

    def check(out):
        errors = list(out.problems)
        if out.timed_out:
            return errors + ["timed out"]
        if not (out.status or "").startswith("HTTP/1.1 101"):
            return errors + [f"handshake answered {out.status!r}"]
        if out.close_code not in allowed:
            errors.append(f"Close {out.close_code} ({out.close_reason!r}); expected one of {sorted(allowed)}")
        if not out.eof:
            errors.append("TCP did not close")
        ends = {}
        last_end = {}
        for n, frame in enumerate(out.texts):
            if not isinstance(frame, dict):
                continue
            if "id" not in frame:
                if "pong" not in frame:
                    errors.append(f"a frame without id: {fz.short(json.dumps(frame).encode(), 160)}")
                continue
            sid = json.dumps(frame["id"])
            if "end" in frame:
                end = frame["end"]
                if not isinstance(end, dict) or not isinstance(end.get("code"), int) or not 0 <= end["code"] <= 16:
                    errors.append(f"an end that is not a status: {fz.short(json.dumps(frame).encode(), 160)}")
                ends[sid] = ends.get(sid, 0) + 1
                last_end[sid] = n
        for sid, count in ends.items():
            if count > started.get(sid, 0):
                errors.append(f"id {sid}: {count} ends for {started.get(sid, 0)} starts")
        if out.close_code == 1000:
            for sid, count in started.items():
                if ends.get(sid, 0) != count:
                    errors.append(f"id {sid}: {ends.get(sid, 0)} ends for {count} starts after Close 1000")
            for n, frame in enumerate(out.texts):
                sid = json.dumps(frame.get("id")) if isinstance(frame, dict) and "id" in frame else None
                if sid and started.get(sid) == 1 and n > last_end.get(sid, n) and ("message" in frame or "headers" in frame):
                    errors.append(f"id {sid}: a frame after its end: {fz.short(json.dumps(frame).encode(), 160)}")
        return errors

    return fz.Case(index, "mux", "ws", "/", description, "any", run, check)


fz.GENERATORS["mux"] = mux_case
