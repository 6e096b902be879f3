"""The browser page in public/, driven in headless Chromium through Selenium.

Needs `chromium` and `chromium-driver` (Debian) and the `selenium` pip module; when any of them
is missing the tests FAIL (they never skip). Screenshots of every step land in
test-output/browser/<step>.png. The explorer's tests also run the websocat and curl lines the page
shows for a run (websocat only where it is installed).
"""
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_upstream import SERVICE, LabServer, lab  # noqa: F401  (lab is a fixture)

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ROOT / "public"
SHOTS = ROOT / "test-output" / "browser"
WAIT = 20  # seconds: the bound of every wait in this file
HI = re.compile(r"^hi ada---\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


# --- the browser ---------------------------------------------------------------------------------


def launch_browser(home=None):
    """Headless Chromium under chromedriver; `home` is its $HOME (where it finds its NSS trust
    store, `.pki/nssdb`)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the selenium module is missing: python3 -m pip install selenium")
    chromedriver = shutil.which("chromedriver")
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if not chromedriver or not chromium:
        pytest.fail(f"chromium ({chromium}) or chromedriver ({chromedriver}) is missing: "
                    "apt-get install -y chromium chromium-driver")
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1400", "--no-first-run", "--no-default-browser-check"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    env = dict(os.environ, HOME=str(home)) if home else None
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver, env=env), options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    SHOTS.mkdir(parents=True, exist_ok=True)
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = launch_browser()
    yield driver
    driver.quit()


def console(driver):
    try:
        return "\n".join(f"{e['level']} {e['message']}" for e in driver.get_log("browser"))
    except Exception:  # noqa: BLE001 - diagnostics only
        return "(no browser log)"


def wait(driver, condition, what):
    """Waits (at most WAIT s, polling every 50 ms) until condition(driver) is truthy; returns it."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda d: condition(d))
    except TimeoutException:
        shot(driver, "FAILED")
        pytest.fail(f"timed out after {WAIT} s waiting for {what}\nbrowser console:\n{console(driver)}")


def by_id(driver, id_):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, id_)


def items(driver, testid):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def text(driver, id_):
    return by_id(driver, id_).text


def attr(driver, id_, name):
    return by_id(driver, id_).get_attribute(name)


def type_into(driver, id_, value):
    field = by_id(driver, id_)
    field.clear()
    field.send_keys(str(value))


def click(driver, id_):
    by_id(driver, id_).click()


def shot(driver, step, section=None):
    """Saves test-output/browser/<step>.png: one section, or the window."""
    path = SHOTS / f"{step}.png"
    if section:
        element = by_id(driver, section)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.screenshot(str(path))
    else:
        driver.save_screenshot(str(path))


def ended(driver, prefix, code):
    """True once the section's connection shows "ended" with gRPC code `code` and the socket closed."""
    state = by_id(driver, f"{prefix}-state")
    return (state.get_attribute("data-state") == "ended" and state.get_attribute("data-code") == str(code)
            and state.get_attribute("data-close") is not None)


def open_page(driver, url, gateway=None):
    driver.get(url)
    wait(driver, lambda d: attr(d, "page-state", "data-ready") == "true",
         f"the page at {url} to load its modules (app.js, sluice-client.js)")
    if gateway is not None:
        type_into(driver, "gateway", gateway)


def page_url(sluice):
    return f"http://127.0.0.1:{sluice.http_port}/"


@pytest.fixture
def gateway(start_sluice):
    """A gateway serving public/, with the seed's pace shortened to 200 ms."""
    return start_sluice("--pace-ms", "200", "--public-dir", str(PUBLIC))


# --- same origin: the page served by the gateway -----------------------------------------------------


def test_page_is_served(browser, gateway):
    open_page(browser, page_url(gateway))
    assert browser.title.startswith("Sluice")
    assert attr(browser, "gateway", "value") == f"http://127.0.0.1:{gateway.http_port}"
    for state in ("list-state", "record-state", "route-state", "data-state", "sayhi-state", "raw-state"):
        assert text(browser, state) == "idle"
    shot(browser, "00-page")


def test_list_streams_one_by_one_into_list_and_chart(browser, gateway):
    open_page(browser, page_url(gateway))
    type_into(browser, "list-name", "a")
    type_into(browser, "list-value", 10)
    click(browser, "list-start")

    # Responses arrive one by one (200 ms apart): we must see the list partly filled.
    seen = set()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        n = len(items(browser, "list-item"))
        if 0 < n < 7 and not any(0 < m < 7 for m in seen):
            shot(browser, "01-list-partial", "list")
        seen.add(n)
        if n >= 7:
            break
        time.sleep(0.02)
    assert any(0 < n < 7 for n in seen), f"List responses did not arrive incrementally (counts seen: {sorted(seen)})"
    wait(browser, lambda d: ended(d, "list", 0), "List to end with code 0")

    rows = items(browser, "list-item")
    assert [int(r.get_attribute("data-value")) for r in rows] == list(range(10, 17))
    assert all(r.text.startswith("a = ") for r in rows)
    times = [float(r.get_attribute("data-t")) for r in rows]
    assert times == sorted(times) and times[-1] - times[0] >= 0.9, f"arrival times not paced: {times}"
    assert text(browser, "list-status") == "0 OK"
    assert attr(browser, "list-state", "data-close") == "shared"  # a stream of the page's one socket
    assert "ended with code 0 OK" in text(browser, "list-state")

    chart = by_id(browser, "list-chart")
    assert chart.get_attribute("data-points") == "7"
    blue = browser.execute_script(
        """const c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
           let n = 0; for (let i = 0; i < d.length; i += 4)
             if (d[i] < 80 && d[i + 1] > 80 && d[i + 1] < 150 && d[i + 2] > 200) n++;
           return n;""", chart)
    assert blue > 200, f"the chart shows no line ({blue} line-coloured pixels)"
    assert "16 at" in chart.get_attribute("aria-label")
    shot(browser, "02-list-done", "list")


def test_record_sends_then_half_closes(browser, gateway):
    open_page(browser, page_url(gateway))
    type_into(browser, "record-name", "p")
    for value in (1, 2, 3):
        type_into(browser, "record-value", value)
        click(browser, "record-send")
    wait(browser, lambda d: len(items(d, "record-sent-item")) == 3, "three Record messages listed")
    wait(browser, lambda d: attr(d, "record-state", "data-state") == "open", "Record to be open")
    assert text(browser, "record-count") == "3"
    assert text(browser, "record-response") == "—", "Record answered before the half-close"
    shot(browser, "03-record-open", "record")

    click(browser, "record-finish")
    wait(browser, lambda d: ended(d, "record", 0), "Record to end with code 0")
    response = text(browser, "record-response")
    assert '"name":"gRPC Stream Server: Record"' in response and '"value":1' in response, response
    assert text(browser, "record-status") == "0 OK"
    assert attr(browser, "record-state", "data-close") == "shared"
    shot(browser, "04-record-done", "record")


def test_route_and_data_answer_each_message(browser, gateway):
    open_page(browser, page_url(gateway))
    type_into(browser, "route-name", "r")
    for n in range(3):
        click(browser, "route-send")
        # each message is answered as it is sent, before the next one goes out
        wait(browser, lambda d: len(items(d, "route-in")) == n + 1, f"Route reply {n}")
        assert attr(browser, "route-state", "data-state") == "open"
    replies = [e.text for e in items(browser, "route-in")]
    assert replies == [f"gRPC Stream Server: Route: {n}" for n in range(3)]
    assert len(items(browser, "route-out")) == 3
    click(browser, "route-finish")
    wait(browser, lambda d: ended(d, "route", 0), "Route to end with code 0")
    assert text(browser, "route-status") == "0 OK"
    assert "$end 0 OK" in items(browser, "route-end")[0].text
    shot(browser, "05-route", "route")

    for n, word in enumerate(("hello", "world")):
        type_into(browser, "data-text", word)
        click(browser, "data-send")
        wait(browser, lambda d: len(items(d, "data-in")) == n + 1, f"DataService reply {n}")
    assert [e.text for e in items(browser, "data-in")] == ["processed: hello", "processed: world"]
    click(browser, "data-finish")
    wait(browser, lambda d: ended(d, "data", 0), "DataService to end with code 0")
    shot(browser, "06-data", "data")


def say_hi_both_ways(driver):
    """The page's SayHi for "ada" over fetch, then over a WebSocket: both answer "hi ada---<time>"."""
    type_into(driver, "sayhi-name", "ada")
    click(driver, "sayhi-fetch")
    wait(driver, lambda d: text(d, "sayhi-fetch-result") not in ("—", "calling…"), "the HTTP JSON SayHi")
    assert HI.match(text(driver, "sayhi-fetch-result")), text(driver, "sayhi-fetch-result")

    click(driver, "sayhi-ws")
    wait(driver, lambda d: ended(d, "sayhi", 0), "the WebSocket SayHi to end with code 0")
    assert HI.match(text(driver, "sayhi-ws-result")), text(driver, "sayhi-ws-result")


def test_sayhi_over_fetch_and_websocket(browser, gateway):
    open_page(browser, page_url(gateway))
    say_hi_both_ways(browser)
    assert text(browser, "sayhi-status") == "0 OK"
    shot(browser, "07-sayhi", "sayhi")


def test_raw_malformed_json_shows_invalid_argument(browser, gateway):
    open_page(browser, page_url(gateway))
    type_into(browser, "raw-path", "/proto.StreamService/Route")
    type_into(browser, "raw-text", '{"pt":{"name":"x","value":1}}')
    click(browser, "raw-send")
    wait(browser, lambda d: len(items(d, "raw-in")) == 1, "the reply to a well-formed raw frame")
    assert '"gRPC Stream Server: Route"' in items(browser, "raw-in")[0].text

    type_into(browser, "raw-text", '{"pt": oops')
    click(browser, "raw-send")
    wait(browser, lambda d: ended(d, "raw", 3), "the raw session to end with code 3")
    status = text(browser, "raw-status")
    assert status.startswith("3 INVALID_ARGUMENT: ") and len(status) > len("3 INVALID_ARGUMENT: "), status
    assert attr(browser, "raw-status", "data-code") == "3"
    assert attr(browser, "raw-state", "data-close") == "4003"
    assert "ended with code 3 INVALID_ARGUMENT" in text(browser, "raw-state")
    last = items(browser, "raw-in")[-1].text
    assert '"$end"' in last and '"code":3' in last, last
    shot(browser, "08-raw-error", "raw")


# --- cross origin: the page served elsewhere -----------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def static_site():
    """public/ served by `python3 -m http.server` on another loopback port; yields its origin."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(PUBLIC)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "python3 -m http.server did not start"
                assert server.poll() is None, "python3 -m http.server exited"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_cross_origin_page(browser, start_sluice, static_site):
    allowed = start_sluice("--pace-ms", "50", "--allowed-origin", static_site)
    target = f"http://127.0.0.1:{allowed.http_port}"
    open_page(browser, static_site + "/", gateway=target)

    click(browser, "sayhi-fetch")
    wait(browser, lambda d: text(d, "sayhi-fetch-result") not in ("—", "calling…"), "the cross-origin SayHi")
    assert HI.match(text(browser, "sayhi-fetch-result")), text(browser, "sayhi-fetch-result")

    type_into(browser, "list-value", 1)
    click(browser, "list-start")
    wait(browser, lambda d: ended(d, "list", 0), "the cross-origin List to end with code 0")
    assert [int(r.get_attribute("data-value")) for r in items(browser, "list-item")] == list(range(1, 8))
    assert by_id(browser, "list-chart").get_attribute("data-points") == "7"
    shot(browser, "09-cross-origin")

    # A gateway that does not list this origin refuses it, and the page says so.
    refusing = start_sluice("--allowed-origin", "http://127.0.0.1:1")
    type_into(browser, "gateway", f"http://127.0.0.1:{refusing.http_port}")
    click(browser, "sayhi-ws")
    wait(browser, lambda d: ended(d, "sayhi", 14), "the refused WebSocket to show code 14")
    assert "refused" in text(browser, "sayhi-status")
    click(browser, "sayhi-fetch")
    wait(browser, lambda d: text(d, "sayhi-fetch-result").startswith("error"), "the refused fetch to show an error")
    shot(browser, "10-cross-origin-refused", "sayhi")


# --- TLS: the page over https, its sessions over wss -------------------------------------------------


def test_page_over_https_and_wss(start_sluice, tmp_path):
    """A CA made here (trustme), trusted in a fresh NSS store that only this Chromium uses: the
    page loads over https and its fetch and WebSocket calls go to https:// and wss://."""
    from conftest import make_pki

    certutil = shutil.which("certutil")
    assert certutil, "certutil is missing: apt-get install -y libnss3-tools"
    make_pki(tmp_path)
    nssdb = tmp_path / "home" / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run([certutil, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    subprocess.run([certutil, "-d", f"sql:{nssdb}", "-A", "-n", "sluice test CA", "-t", "C,,",
                    "-i", str(tmp_path / "ca.pem")], check=True)

    s = start_sluice("--pace-ms", "50", "--public-dir", str(PUBLIC),
                     "--tls-cert", str(tmp_path / "chain.pem"), "--tls-key", str(tmp_path / "key.pem"))
    driver = launch_browser(home=tmp_path / "home")
    try:
        open_page(driver, f"https://127.0.0.1:{s.http_port}/")
        assert driver.execute_script("return location.protocol + window.isSecureContext") == "https:true"
        assert attr(driver, "gateway", "value") == f"https://127.0.0.1:{s.http_port}"

        say_hi_both_ways(driver)  # https:// and wss://: the port speaks only TLS

        type_into(driver, "list-value", 3)
        click(driver, "list-start")
        wait(driver, lambda d: ended(d, "list", 0), "the List over wss to end with code 0")
        assert [int(r.get_attribute("data-value")) for r in items(driver, "list-item")] == list(range(3, 10))
        # The port speaks only TLS, so those sessions were wss://; and every resource the page
        # fetched (its modules, the SayHi fetch) was https://.
        urls = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(u.startswith("https://") for u in urls), urls
        shot(driver, "11-https-wss")
    finally:
        driver.quit()


# --- the explorer: every method from server reflection, run from an editable request ---------------

HOSTED_METHODS = {
    "DataService": {"/DataService/BidirectionalStream": "bidirectional"},
    "grpc.health.v1.Health": {
        "/grpc.health.v1.Health/Check": "unary",
        "/grpc.health.v1.Health/List": "unary",
        "/grpc.health.v1.Health/Watch": "server streaming",
    },
    "grpc.reflection.v1.ServerReflection": {
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": "bidirectional",
    },
    "grpc.reflection.v1alpha.ServerReflection": {
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "bidirectional",
    },
    "hello.UserService": {"/hello.UserService/SayHi": "unary"},
    "proto.StreamService": {
        "/proto.StreamService/List": "server streaming",
        "/proto.StreamService/Record": "client streaming",
        "/proto.StreamService/Route": "bidirectional",
    },
}


@pytest.fixture
def plain_gateway(start_sluice):
    """A gateway as shipped: its built-in page (no --public-dir), and the seed unpaced."""
    return start_sluice("--pace-ms", "0")


def open_explorer(driver, sluice):
    """Opens the page and waits for the explorer's reflection to answer."""
    open_page(driver, page_url(sluice))
    wait(driver, lambda d: attr(d, "explorer-load-state", "data-state") != "loading", "the explorer's reflection")
    assert attr(driver, "explorer-load-state", "data-state") == "ready", text(driver, "explorer-load-state")


def listed_methods(driver):
    """{service: {path: kind}} as the explorer lists them."""
    return driver.execute_script(
        """const out = {};
           for (const s of document.querySelectorAll('[data-testid="explorer-service"]')) {
             out[s.dataset.service] = {};
             for (const m of s.querySelectorAll('[data-testid="explorer-method"]'))
               out[s.dataset.service][m.dataset.path] = m.dataset.kind;
           }
           return out;""")


def pick(driver, path):
    from selenium.webdriver.common.by import By

    button = driver.find_element(By.CSS_SELECTOR, f'[data-testid="explorer-method"][data-path="{path}"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    wait(driver, lambda d: text(d, "explorer-path") == path, f"the explorer to show {path}")


def template(driver):
    """The request editor's text, as the JSON value(s) it holds."""
    return json.loads(attr(driver, "explorer-request", "value"))


def frames(driver, testid):
    return [json.loads(e.text) for e in items(driver, testid)]


def run_shown(command, what):
    """Runs a command line the page shows, as a user pasting it into bash would."""
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, f"{what} failed ({done.returncode}): {command}\n{done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_explorer_lists_every_service_and_method(browser, plain_gateway):
    open_explorer(browser, plain_gateway)
    assert listed_methods(browser) == HOSTED_METHODS
    names = [e.text for e in items(browser, "explorer-method")]
    assert names == ["BidirectionalStream", "Check", "List", "Watch", "ServerReflectionInfo", "ServerReflectionInfo",
                     "SayHi", "List", "Record", "Route"]
    assert text(browser, "explorer-load-state").startswith("6 services, 10 methods")
    assert text(browser, "explorer-path") == "pick a method" and not by_id(browser, "explorer-run").is_enabled()

    # A oneof gets its first member only (two would be INVALID_ARGUMENT), and the help names the others.
    pick(browser, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
    assert template(browser) == {"host": "", "fileByFilename": ""}
    assert "oneof message_request: set one of fileByFilename, fileContainingSymbol" in text(browser, "explorer-help")
    shot(browser, "12-explorer-services", "explorer")


def test_explorer_runs_list_and_shows_working_commands(browser, plain_gateway):
    open_explorer(browser, plain_gateway)
    pick(browser, "/proto.StreamService/List")
    assert text(browser, "explorer-kind") == "server streaming"
    assert text(browser, "explorer-types") == "proto.StreamRequest → stream proto.StreamResponse"
    assert template(browser) == {"pt": {"name": "", "value": 0}}

    type_into(browser, "explorer-request", '{"pt": {\n  "name": "x",\n  "value": 5\n}}')
    click(browser, "explorer-run")
    wait(browser, lambda d: ended(d, "explorer", 0), "the explorer's List to end with code 0")
    expected = [{"pt": {"name": "x", "value": v}} for v in range(5, 12)]
    assert frames(browser, "explorer-response") == expected
    assert text(browser, "explorer-count") == "7"
    assert frames(browser, "explorer-out") == [{"pt": {"name": "x", "value": 5}}]
    assert frames(browser, "explorer-end") == [{"$end": {"code": 0}}]
    assert text(browser, "explorer-status") == "0 OK"
    assert attr(browser, "explorer-state", "data-close") == "1000"
    assert text(browser, "explorer-headers") == "—"
    shot(browser, "13-explorer-list", "explorer")

    # The commands are what was sent (minified as typed), and they work.
    message = '{"pt":{"name":"x","value":5}}'
    port = plain_gateway.http_port
    websocat = text(browser, "explorer-websocat")
    curl = text(browser, "explorer-curl")
    assert websocat == f"echo '{message}' | websocat ws://127.0.0.1:{port}/proto.StreamService/List"
    assert curl == f"curl -N -d '{message}' http://127.0.0.1:{port}/proto.StreamService/List"
    assert run_shown(curl, "the shown curl line") == [*expected, {"$end": {"code": 0}}]
    if shutil.which("websocat"):
        assert run_shown(websocat, "the shown websocat line") == [*expected, {"$end": {"code": 0}}]


def test_explorer_shows_the_gateways_invalid_argument(browser, plain_gateway):
    open_explorer(browser, plain_gateway)
    pick(browser, "/hello.UserService/SayHi")
    assert text(browser, "explorer-kind") == "unary"
    assert template(browser) == {"name": ""}

    # JSON that does not parse stays in the page: it says where, and opens no session.
    type_into(browser, "explorer-request", '{"name": ')
    click(browser, "explorer-run")
    wait(browser, lambda d: by_id(d, "explorer-problem").is_displayed(), "the editor's syntax problem")
    assert "message 1 (line 1) is not finished" in text(browser, "explorer-problem")
    assert attr(browser, "explorer-state", "data-state") == "idle"

    type_into(browser, "explorer-request", '{"name": "ada", "nope": 1}')
    click(browser, "explorer-run")
    wait(browser, lambda d: ended(d, "explorer", 3), "the explorer's SayHi to end with code 3")
    assert not by_id(browser, "explorer-problem").is_displayed()
    status = text(browser, "explorer-status")
    assert status.startswith("3 INVALID_ARGUMENT: ") and 'unknown field "nope"' in status, status
    assert attr(browser, "explorer-state", "data-close") == "4003"
    assert items(browser, "explorer-response") == []
    [end] = frames(browser, "explorer-end")
    assert end["$end"]["code"] == 3 and 'unknown field "nope"' in end["$end"]["message"], end
    shot(browser, "14-explorer-invalid-argument", "explorer")

    # The same request through the shown curl line: the same status, as an HTTP 400 body.
    [answer] = run_shown(text(browser, "explorer-curl"), "the shown curl line")
    assert answer == end["$end"], answer


def test_explorer_client_streaming_and_bidi(browser, plain_gateway):
    open_explorer(browser, plain_gateway)
    port = plain_gateway.http_port

    # Record: two messages, one per line; Run sends them, then $end.
    pick(browser, "/proto.StreamService/Record")
    assert text(browser, "explorer-kind") == "client streaming"
    assert attr(browser, "explorer-request", "value") == '{"pt":{"name":"","value":0}}'
    one, two = '{"pt":{"name":"a","value":1}}', '{"pt":{"name":"b","value":2}}'
    type_into(browser, "explorer-request", f"{one}\n{two}")
    click(browser, "explorer-run")
    wait(browser, lambda d: ended(d, "explorer", 0), "the explorer's Record to end with code 0")
    recorded = {"pt": {"name": "gRPC Stream Server: Record", "value": 1}}
    assert frames(browser, "explorer-response") == [recorded]
    assert [e.text for e in items(browser, "explorer-out")] == [one, two, '{"$end":true}']
    websocat = text(browser, "explorer-websocat")
    curl = text(browser, "explorer-curl")
    assert websocat == (f"printf '%s\\n' '{one}' '{two}' '{{\"$end\":true}}' | "
                        f"websocat ws://127.0.0.1:{port}/proto.StreamService/Record")
    assert curl == (f"printf '%s\\n' '{one}' '{two}' | curl -T - -H 'Content-Type: application/x-ndjson' "
                    f"http://127.0.0.1:{port}/proto.StreamService/Record")
    assert run_shown(curl, "the shown curl line") == [recorded]
    shot(browser, "15-explorer-record", "explorer")

    # Route: the stream kept open, each message answered as it is sent; a ' in a name is quoted.
    pick(browser, "/proto.StreamService/Route")
    assert text(browser, "explorer-kind") == "bidirectional"
    assert text(browser, "explorer-types") == "stream proto.StreamRequest → stream proto.StreamResponse"
    click(browser, "explorer-keep-open")
    type_into(browser, "explorer-request", '{"pt":{"name":"r","value":1}}')
    click(browser, "explorer-run")
    wait(browser, lambda d: len(items(d, "explorer-response")) == 1, "Route's first answer")
    assert attr(browser, "explorer-state", "data-state") == "open"
    type_into(browser, "explorer-request", '{"pt":{"name":"it\'s","value":2}}')
    click(browser, "explorer-send")
    wait(browser, lambda d: len(items(d, "explorer-response")) == 2, "Route's second answer")
    click(browser, "explorer-finish")
    wait(browser, lambda d: ended(d, "explorer", 0), "the explorer's Route to end with code 0")
    routed = [{"pt": {"name": "gRPC Stream Server: Route", "value": n}} for n in (0, 1)]
    assert frames(browser, "explorer-response") == routed
    websocat = text(browser, "explorer-websocat")
    curl = text(browser, "explorer-curl")
    sent = "'{\"pt\":{\"name\":\"r\",\"value\":1}}' '{\"pt\":{\"name\":\"it'\\''s\",\"value\":2}}'"
    assert websocat == (f"printf '%s\\n' {sent} '{{\"$end\":true}}' | "
                        f"websocat ws://127.0.0.1:{port}/proto.StreamService/Route"), websocat
    assert curl == (f"printf '%s\\n' {sent} | curl -N -T - -H 'Content-Type: application/x-ndjson' "
                    f"http://127.0.0.1:{port}/proto.StreamService/Route"), curl
    assert run_shown(curl, "the shown curl line") == [*routed, {"$end": {"code": 0}}]
    if shutil.which("websocat"):
        assert run_shown(websocat, "the shown websocat line") == [*routed, {"$end": {"code": 0}}]
    shot(browser, "16-explorer-route", "explorer")



def test_explorer_templates_of_an_upstream_service(browser, start_sluice, lab):
    """An upstream service known from a descriptor set: enums, int64, a map, a oneof, repeated,
    bytes and well-known types get their JSON defaults, and the upstream takes that template as is."""
    upstream = LabServer(lab)
    try:
        s = start_sluice("--upstream", f"{SERVICE}={upstream.address}", "--descriptor-set", str(lab.protoset))
        open_explorer(browser, s)
        listed = listed_methods(browser)
        assert set(listed) == {*HOSTED_METHODS, SERVICE}
        assert listed[SERVICE]["/upstream.lab.Lab/Sum"] == "client streaming"
        assert listed[SERVICE]["/upstream.lab.Lab/Chat"] == "bidirectional"

        pick(browser, "/upstream.lab.Lab/Echo")
        item = {"name": "", "count": "0", "mood": "MOOD_UNSPECIFIED", "tags": {}, "text": "",
                "when": "1970-01-01T00:00:00Z", "extra": {}, "notes": [], "blob": ""}
        assert template(browser) == item
        assert "oneof choice: set one of text, number" in text(browser, "explorer-help")
        click(browser, "explorer-run")
        wait(browser, lambda d: ended(d, "explorer", 0), "the upstream Echo of the template to end with code 0")
        [reply] = frames(browser, "explorer-response")
        assert reply["item"] == item, reply
        # The upstream's response headers arrive as a $headers frame, shown apart.
        assert json.loads(text(browser, "explorer-headers")) == {"x-upstream-initial": ["lab"]}
        assert frames(browser, "explorer-headers-frame") == [{"$headers": {"x-upstream-initial": ["lab"]}}]
        shot(browser, "17-explorer-upstream", "explorer")
    finally:
        upstream.kill()


def test_explorer_template_rules(browser, plain_gateway):
    """The page's own descriptor reader and template builder on a FileDescriptorProto serialized
    by protobuf itself: recursion stops, negative enum numbers, proto2 defaults, proto3 optional,
    wrappers and the other well-known types."""
    from google.protobuf import descriptor_pb2 as d

    F = d.FieldDescriptorProto
    file = d.FileDescriptorProto(name="t/rules.proto", package="t.rules", syntax="proto2")
    file.dependency.extend(["google/protobuf/wrappers.proto", "google/protobuf/duration.proto"])
    sign = file.enum_type.add(name="Sign")
    sign.value.add(name="MINUS", number=-1)
    sign.value.add(name="PLUS", number=1)
    node = file.message_type.add(name="Node")
    node.options.deprecated = True  # an option the reader skips
    node.field.add(name="next_node", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE, type_name=".t.rules.Node")
    node.field.add(name="kids", number=2, label=F.LABEL_REPEATED, type=F.TYPE_MESSAGE, type_name=".t.rules.Node")
    node.field.add(name="leaf", number=3, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE, type_name="Node.Leaf")
    leaf = node.nested_type.add(name="Leaf")
    leaf.field.add(name="back", number=1, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE, type_name=".t.rules.Node")
    leaf.field.add(name="sign", number=2, label=F.LABEL_OPTIONAL, type=F.TYPE_ENUM, type_name=".t.rules.Sign")
    leaf.field.add(name="big", number=536870911, label=F.LABEL_OPTIONAL, type=F.TYPE_SINT64, default_value="-7")
    leaf.field.add(name="ratio", number=5, label=F.LABEL_OPTIONAL, type=F.TYPE_DOUBLE, default_value="inf")
    leaf.field.add(name="on", number=6, label=F.LABEL_OPTIONAL, type=F.TYPE_BOOL, default_value="true")
    wkt = file.message_type.add(name="Wkt")
    for n, (name, type_name) in enumerate([
        ("i64", "Int64Value"), ("u32", "UInt32Value"), ("flag", "BoolValue"), ("s", "StringValue"),
        ("b", "BytesValue"), ("d", "Duration"), ("v", "Value"), ("l", "ListValue"), ("a", "Any"),
        ("e", "Empty"), ("m", "FieldMask"), ("st", "Struct"), ("ts", "Timestamp"),
    ], start=1):
        wkt.field.add(name=name, number=n, label=F.LABEL_OPTIONAL, type=F.TYPE_MESSAGE,
                      type_name=f".google.protobuf.{type_name}", json_name=name)
    wkt.field.add(name="nothing", number=20, label=F.LABEL_OPTIONAL, type=F.TYPE_ENUM,
                  type_name=".google.protobuf.NullValue")
    wkt.field.add(name="maybe_count", number=21, label=F.LABEL_OPTIONAL, type=F.TYPE_UINT64, oneof_index=0,
                  proto3_optional=True)
    wkt.field.add(name="fixed", number=22, label=F.LABEL_REPEATED, type=F.TYPE_FIXED32)
    wkt.oneof_decl.add(name="_maybe_count")
    service = file.service.add(name="Rules")
    service.method.add(name="Walk", input_type=".t.rules.Node", output_type=".t.rules.Wkt", client_streaming=True)
    encoded = base64.b64encode(file.SerializeToString()).decode()

    open_explorer(browser, plain_gateway)
    result = browser.execute_async_script(
        """const [b64, done] = arguments;
           import('./sluice-client.js').then((m) => {
             const d = new m.Descriptors();
             d.add(b64);
             done({ node: d.template('t.rules.Node'), leaf: d.template('.t.rules.Node.Leaf'),
                    wkt: d.template('t.rules.Wkt'), shallow: d.template('t.rules.Node', { maxDepth: 1 }),
                    method: d.services.get('t.rules.Rules').methods[0] });
           }).catch((e) => done({ error: String(e) }));""", encoded)
    assert "error" not in result, result["error"] if "error" in result else None
    leaf_defaults = {"sign": "MINUS", "big": "-7", "ratio": "Infinity", "on": True}
    assert result["node"] == {"nextNode": {}, "kids": [], "leaf": {"back": {}, **leaf_defaults}}
    assert result["leaf"] == {"back": {"nextNode": {}, "kids": [], "leaf": {}}, **leaf_defaults}
    assert result["shallow"] == {"nextNode": {}, "kids": [], "leaf": {}}
    assert result["wkt"] == {
        "i64": "0", "u32": 0, "flag": False, "s": "", "b": "", "d": "0s", "v": None, "l": [], "a": {}, "e": {},
        "m": "", "st": {}, "ts": "1970-01-01T00:00:00Z", "nothing": None, "maybeCount": "0", "fixed": [],
    }
    method = result["method"]
    assert (method["path"], method["kind"], method["inputType"], method["outputType"]) == (
        "/t.rules.Rules/Walk", "client streaming", "t.rules.Node", "t.rules.Wkt")


# --- the multiplexed session from the page ----------------------------------------------------------

# Counts the WebSockets the page opens from here on (sluice-client.js looks `WebSocket` up when it
# opens one).
COUNT_SOCKETS = """
  if (!window.__sockets) {
    const Real = WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Real {
      constructor(url, protocols) { super(url, protocols); window.__sockets.push(url); }
    };
  }
"""


def test_page_rpcs_share_one_socket_and_a_slow_list_stalls_only_itself(browser, start_sluice):
    """A List with credit 1 that the page reads slowly (async iteration) and a Route that stays
    responsive meanwhile, on one socket; the Route's round trips while the List waits are printed."""
    s = start_sluice("--pace-ms", "0", "--list-count", "100000")
    open_page(browser, page_url(s))
    result = browser.execute_async_script(COUNT_SOCKETS + """
        const done = arguments[arguments.length - 1];
        import("./sluice-client.js").then(async (m) => {
          const list = m.openRpc("", "/proto.StreamService/List", { singleRequest: true, credit: 1 });
          list.send({ pt: { name: "slow", value: 0 } });
          const listed = list[Symbol.asyncIterator]();
          const first = (await listed.next()).value;
          const route = m.openRpc("", "/proto.StreamService/Route");
          const answers = route[Symbol.asyncIterator]();
          const trips = [];
          for (let i = 0; i < 50; i++) {
            const began = performance.now();
            route.send({ pt: { name: "r", value: i } });
            await answers.next();
            trips.push(performance.now() - began);
          }
          const slow = [];
          for (let i = 0; i < 3; i++) {
            await new Promise((r) => setTimeout(r, 100));
            slow.push((await listed.next()).value.pt.value);
          }
          route.end();
          const routeStatus = await route.done;
          await listed.return();  // leaving the loop early cancels the List
          done({ first, trips, slow, sockets: window.__sockets, routeStatus, listStatus: await list.done,
                 ids: [list.id, route.id] });
        }).catch((e) => done({ error: String(e) }));""")
    assert "error" not in result, result
    trips = sorted(result["trips"])
    print(f"page Route round trip while a List on the same socket waits for credit: median {trips[25]:.2f} ms, "
          f"p99 {trips[49]:.2f} ms")
    # The page's socket, opened for the explorer's reflection, carries both: no other is opened.
    assert result["sockets"] == [] and isinstance(result["ids"][0], int) and result["ids"][0] != result["ids"][1]
    assert result["first"] == {"pt": {"name": "slow", "value": 0}}
    assert result["slow"] == [1, 2, 3]
    assert result["routeStatus"] == {"code": 0}
    assert result["listStatus"]["code"] == 1


def test_a_lost_socket_ends_each_stream_with_14_and_the_next_rpc_reconnects(browser, start_sluice):
    s = start_sluice("--pace-ms", "0")
    port = s.http_port
    open_page(browser, page_url(s))
    result = browser.execute_async_script(COUNT_SOCKETS + """
        const done = arguments[arguments.length - 1];
        import("./sluice-client.js").then(async (m) => {
          window.sluice = m;
          window.route = m.openRpc("", "/proto.StreamService/Route");
          const answers = window.route[Symbol.asyncIterator]();
          window.route.send({ pt: { value: 1 } });
          done((await answers.next()).value);
        }).catch((e) => done({ error: String(e) }));""")
    assert result == {"pt": {"name": "gRPC Stream Server: Route", "value": 0}}, result
    s.process.kill()
    s.process.wait()
    lost = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        window.route.done.then(async (status) => {
          // The gateway is down: the first RPC fails to connect, the next two wait for one retry.
          const first = await window.sluice.openRpc("", "/hello.UserService/SayHi").done;
          const both = await Promise.all([1, 2].map(() => window.sluice.openRpc("", "/hello.UserService/SayHi").done));
          done({ status, closeCode: window.route.closeCode, first, both, sockets: window.__sockets.length });
        });""")
    assert lost["status"]["code"] == 14 and lost["closeCode"] == 1006, lost
    assert lost["first"]["code"] == 14 and [b["code"] for b in lost["both"]] == [14, 14], lost
    assert lost["sockets"] == 2, lost  # one attempt for the first, one (after the backoff) for both
    start_sluice("--pace-ms", "0", "--http-port", str(port))
    back = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const hi = window.sluice.openRpc("", "/hello.UserService/SayHi", { singleRequest: true });
        hi.send({ name: "ada" });
        const answers = [];
        (async () => { for await (const answer of hi) answers.push(answer); })()
          .then(() => done({ answers, status: hi.status, sockets: window.__sockets.length }),
                (e) => done({ error: String(e) }));""")
    assert "error" not in back, back
    assert back["status"] == {"code": 0} and HI.match(back["answers"][0]["result"]), back
    assert back["sockets"] == 3, back


def test_explorer_runs_route_on_the_multiplexed_session(browser, plain_gateway):
    open_explorer(browser, plain_gateway)
    pick(browser, "/proto.StreamService/Route")
    select_protocol(browser, "websocket-mux")
    type_into(browser, "explorer-request", '{"pt":{"name":"a","value":1}}\n{"pt":{"name":"b","value":2}}')
    click(browser, "explorer-run")
    wait(browser, lambda d: ended(d, "explorer", 0), "the explorer's multiplexed Route to end with code 0")
    routed = [{"pt": {"name": "gRPC Stream Server: Route", "value": n}} for n in range(2)]
    responses = frames(browser, "explorer-response")
    assert [f["message"] for f in responses] == routed and len({f["id"] for f in responses}) == 1, responses
    [end] = frames(browser, "explorer-end")
    assert end["end"] == {"code": 0} and end["id"] == responses[0]["id"]
    assert attr(browser, "explorer-state", "data-close") == "shared"
    websocat = text(browser, "explorer-websocat")
    assert websocat.endswith(f"| websocat ws://127.0.0.1:{plain_gateway.http_port}/") and "credit" not in websocat
    if shutil.which("websocat"):
        shown = run_shown(websocat, "the shown websocat line")
        assert [f["message"] for f in shown if "message" in f] == routed and shown[-1]["end"] == {"code": 0}
    curl = text(browser, "explorer-curl")
    assert run_shown(curl, "the shown curl line") == [*routed, {"$end": {"code": 0}}]


# --- gRPC-Web and Connect from the page (fetch), across origins -------------------------------------


def select_protocol(driver, value):
    from selenium.webdriver.support.ui import Select

    Select(by_id(driver, "explorer-protocol")).select_by_value(value)


def fetch_run_ended(driver, code):
    state = by_id(driver, "explorer-state")
    return state.get_attribute("data-state") == "ended" and state.get_attribute("data-code") == str(code)


def grpc_web_frames(raw):
    """(messages, trailers) of a gRPC-Web response body with JSON messages."""
    import struct

    messages, trailers, offset = [], {}, 0
    while offset < len(raw):
        flags, length = struct.unpack(">BI", raw[offset:offset + 5])
        data = raw[offset + 5:offset + 5 + length]
        offset += 5 + length
        if flags & 0x80:
            trailers = dict(line.split(": ", 1) for line in data.decode().split("\r\n") if line)
        else:
            messages.append(json.loads(data))
    return messages, trailers


def test_explorer_runs_grpc_web_and_connect_from_another_origin(browser, start_sluice, static_site):
    """The page from another origin (python3 -m http.server) runs List over gRPC-Web and SayHi over
    Connect against a gateway that allows that origin, and shows curl lines that work; a gateway
    that does not allow it is refused by the browser (CORS), for both protocols."""
    allowed = start_sluice("--pace-ms", "0", "--allowed-origin", static_site)
    target = f"http://127.0.0.1:{allowed.http_port}"
    open_page(browser, f"{static_site}/?gateway={target}")
    wait(browser, lambda d: attr(d, "explorer-load-state", "data-state") != "loading", "the explorer's reflection")

    pick(browser, "/proto.StreamService/List")
    type_into(browser, "explorer-request", '{"pt": {"name": "x", "value": 5}}')
    select_protocol(browser, "grpc-web")
    click(browser, "explorer-run")
    wait(browser, lambda d: fetch_run_ended(d, 0), "List over gRPC-Web to end with code 0")
    expected = [{"pt": {"name": "x", "value": v}} for v in range(5, 12)]
    assert frames(browser, "explorer-response") == expected
    assert text(browser, "explorer-count") == "7" and text(browser, "explorer-status") == "0 OK"
    assert "application/grpc-web+json" in text(browser, "explorer-headers")
    shot(browser, "18-explorer-grpc-web", "explorer")
    curl = text(browser, "explorer-curl")
    assert "Content-Type: application/grpc-web+json" in curl and curl.startswith("printf ")
    shown = subprocess.run(["bash", "-c", curl], capture_output=True, timeout=WAIT)
    assert shown.returncode == 0, shown.stderr
    assert grpc_web_frames(shown.stdout) == (expected, {"grpc-status": "0"})

    pick(browser, "/hello.UserService/SayHi")
    type_into(browser, "explorer-request", '{"name": "ada"}')
    select_protocol(browser, "connect")
    click(browser, "explorer-run")
    wait(browser, lambda d: fetch_run_ended(d, 0), "SayHi over Connect to end with code 0")
    assert HI.match(frames(browser, "explorer-response")[0]["result"])
    curl = text(browser, "explorer-curl")
    assert "Connect-Protocol-Version: 1" in curl
    assert HI.match(run_shown(curl, "the shown Connect curl line")[0]["result"])
    # An error comes back as Connect's error JSON, read into a status.
    type_into(browser, "explorer-request", '{"nam": "ada"}')
    click(browser, "explorer-run")
    wait(browser, lambda d: fetch_run_ended(d, 3), "a bad SayHi over Connect to end with INVALID_ARGUMENT")
    assert 'unknown field "nam"' in text(browser, "explorer-status")
    shot(browser, "19-explorer-connect", "explorer")

    # A gateway that does not allow this origin: the browser refuses the answer (403 without CORS).
    refusing = start_sluice("--allowed-origin", "http://127.0.0.1:1")
    for protocol in ("grpc-web", "connect"):
        status = browser.execute_async_script(
            """const [base, protocol, done] = arguments;
               import("./sluice-client.js")
                 .then((m) => m.callFetch(base, "/hello.UserService/SayHi", protocol, [{ name: "ada" }]))
                 .then(done, (e) => done({ code: -1, message: String(e) }));""",
            f"http://127.0.0.1:{refusing.http_port}", protocol)
        assert status["code"] == 14 and "CORS" in status["message"], status


# --- REST routes from the page ------------------------------------------------------------------


def test_explorer_runs_rest_routes(browser, start_sluice, lab):
    """The explorer offers each method's REST routes (the gateway's /openapi.json) beside the three
    protocols, builds the route's request from the editor's message (path variables, the query,
    the body; NDJSON for a request stream), runs it with fetch, and shows a curl line that works:
    a hosted method's --http-rule route, an upstream's GET with a query, a server stream, a client
    stream, and an error."""
    from selenium.webdriver.support.ui import Select

    upstream = LabServer(lab)
    try:
        s = start_sluice("--pace-ms", "0", "--upstream", f"{SERVICE}={upstream.address}", "--descriptor-set",
                         str(lab.protoset), "--http-rule", "hello.UserService.SayHi GET /v1/hi/{name}")
        base = f"http://127.0.0.1:{s.http_port}"
        open_explorer(browser, s)
        assert " REST routes" in text(browser, "explorer-load-state"), text(browser, "explorer-load-state")

        def run_rest(path, route, request, code=0):
            pick(browser, path)
            Select(by_id(browser, "explorer-protocol")).select_by_visible_text(route)
            type_into(browser, "explorer-request", request)
            click(browser, "explorer-run")
            wait(browser, lambda d: fetch_run_ended(d, code), f"{route} to end with code {code}")
            return frames(browser, "explorer-response"), text(browser, "explorer-curl")

        [reply], curl = run_rest("/hello.UserService/SayHi", "REST GET /v1/hi/{name}", '{"name": "ada"}')
        assert HI.match(reply["result"]), reply
        assert curl == f"curl {base}/v1/hi/ada"
        assert HI.match(run_shown(curl, "the shown REST curl line")[0]["result"])
        shot(browser, "20-explorer-rest", "explorer")

        [reply], curl = run_rest("/upstream.lab.Lab/Echo", "REST GET /v1/items/{name}",
                                 '{"name": "w x", "count": "5", "mood": "HAPPY", "notes": ["a", "b"], "text": ""}')
        assert reply["item"]["name"] == "w x" and reply["item"]["count"] == "5" and reply["item"]["notes"] == ["a", "b"]
        assert curl == f"curl '{base}/v1/items/w%20x?count=5&mood=HAPPY&notes=a&notes=b'", curl
        assert run_shown(curl, "the shown REST curl line")[0]["item"]["mood"] == "HAPPY"

        replies, curl = run_rest("/upstream.lab.Lab/Count", "REST GET /v1/count/{count}", '{"count": 3}')
        assert [r["name"] for r in replies] == ["lab-0", "lab-1", "lab-2"] and text(browser, "explorer-count") == "3"
        assert curl == f"curl -N -H 'Accept: application/x-ndjson' {base}/v1/count/3", curl

        [total], curl = run_rest("/upstream.lab.Lab/Sum", "REST POST /v1/sum", '{"count": "1"}\n{"count": "2"}')
        assert total == {"sum": "3", "items": 2}, total
        assert run_shown(curl, "the shown NDJSON curl line") == [{"sum": "3", "items": 2}], curl

        replies, _ = run_rest("/upstream.lab.Lab/Fail", "REST GET /v1/fail/{code}",
                              '{"code": 5, "message": "no widget"}', code=5)
        assert replies == [] and text(browser, "explorer-status").startswith("5 NOT_FOUND")
        assert "no widget" in text(browser, "explorer-status"), text(browser, "explorer-status")
    finally:
        upstream.kill()
