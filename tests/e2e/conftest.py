"""Fixtures for the end-to-end tests: a real Envoy with the Tollgate filter and
the mock provider, started once per session on free ports."""
from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import stack as stackmod  # noqa: E402

SEARCH_KEY = "tg-demo-search-key"
LABS_KEY = "tg-demo-labs-key"
RESTRICTED_KEY = "tg-demo-restricted-key"

# Demo prices (micro-USD per million tokens), as in envoy/demo/envoy.yaml.
PRICES = {
    "openai/gpt-5.4": dict(input=2_500_000, cached_input=250_000, output=15_000_000),
    "openai/gpt-5.4-mini": dict(input=250_000, cached_input=25_000, output=2_000_000),
    "openai/gpt-5.1-codex": dict(input=1_250_000, cached_input=125_000, output=10_000_000),
    "openai/gpt-5-search-api": dict(input=1_250_000, cached_input=125_000, output=10_000_000),
    "openai/gpt-audio": dict(input=2_500_000, output=10_000_000),
    "anthropic/claude-sonnet-4-6": dict(input=3_000_000, cached_input=300_000, cache_write=3_750_000, output=15_000_000),
    "anthropic/claude-opus-4-8": dict(input=5_000_000, cached_input=500_000, cache_write=6_250_000, output=25_000_000),
    "deepseek/deepseek-v4": dict(input=270_000, cached_input=70_000, output=1_100_000),
    "openai/text-embedding-3-small": dict(input=20_000, output=0),
    "google/gemini-embedding-001": dict(input=150_000, output=0),
    "openai/gpt-3.5-turbo-instruct": dict(input=1_500_000, output=2_000_000),
    "openai/babbage-002": dict(input=400_000, output=400_000),
    "google/gemini-2.5-flash": dict(input=300_000, cached_input=30_000, output=2_500_000),
    "google/gemini-3-flash-preview": dict(input=500_000, cached_input=50_000, output=3_000_000),
    "google/gemini-2.5-flash-image": dict(input=300_000, output=2_500_000, image_output=30_000_000),
    "openai/gpt-image-1.5": dict(input=5_000_000, cached_input=1_250_000, image_input=8_000_000, output=10_000_000, image_output=32_000_000),
    "openai/gpt-image-1": dict(input=5_000_000, cached_input=1_250_000, image_input=10_000_000, output=40_000_000),
    "openai/gpt-image-1-mini": dict(input=2_000_000, cached_input=200_000, image_input=2_500_000, output=8_000_000),
    "openai/gpt-image-2.6-sunburst": dict(input=5_000_000, cached_input=1_250_000, image_input=8_000_000, output=30_000_000),
}


def expected_cost(model: str, input_tokens: int, output_tokens: int, cached: int = 0, cache_write: int = 0,
                  percent: int = 100, image: int = 0, image_input: int = 0) -> int:
    """Independent re-statement of the pricing rule: exact pico-dollars, rounded up once
    (`percent`: a processing tier's token prices, each rounded up; `image`: output tokens of images;
    `image_input`: uncached input tokens of images)."""
    p = {k: -(-v * percent // 100) for k, v in PRICES[model].items()}
    picos = ((input_tokens - cached - cache_write - image_input) * p["input"]
             + image_input * p.get("image_input", p["input"])
             + cached * p.get("cached_input", p["input"])
             + cache_write * p.get("cache_write", p["input"])
             + (output_tokens - image) * p["output"]
             + image * p.get("image_output", p["output"]))
    return -(-picos // 1_000_000)


class Client:
    def __init__(self, stack: stackmod.Stack):
        self.stack = stack
        self.url = stack.url

    def post(self, path: str, body=None, key: str | None = SEARCH_KEY, headers: dict | None = None,
             raw: bytes | None = None, stream: bool = False, auth: str = "bearer") -> requests.Response:
        h = {"content-type": "application/json"}
        if key is not None:
            if auth == "bearer":
                h["authorization"] = f"Bearer {key}"
            else:
                h["x-api-key"] = key
        h.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        return requests.post(self.url + path, data=data, headers=h, stream=stream, timeout=30)

    def chat(self, model: str, content: str = "Hello there", **kw) -> requests.Response:
        extra = kw.pop("extra", {})
        body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
        return self.post("/v1/chat/completions", body, **kw)

    def messages(self, model: str, content: str = "Hello there", **kw) -> requests.Response:
        extra = kw.pop("extra", {})
        body = {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": content}], **extra}
        kw.setdefault("auth", "x-api-key")
        return self.post("/v1/messages", body, **kw)

    def records(self) -> list[dict]:
        return self.stack.envoy.usage_records()

    def record(self, request_id: str, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records() if request_id in (r["id"], r.get("client_request_id"))]
            if found:
                assert len(found) == 1, f"one record per request, got {len(found)}"
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no usage record for {request_id}")
            time.sleep(0.05)


def sent_form(client) -> dict[str, list[bytes]]:
    """The multipart form the provider got last, by field (read here, independently
    of the gateway's parser and the mock's)."""
    raw = requests.get(client.stack.mock.url + "/mock/last-body", timeout=5).content
    delimiter = raw.split(b"\r\n", 1)[0]
    assert delimiter.startswith(b"--"), raw[:80]
    fields: dict[str, list[bytes]] = {}
    for part in raw.split(b"\r\n" + delimiter)[0:]:
        part = part.removeprefix(delimiter)
        if part.startswith(b"--"):
            break
        head, _, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        fields.setdefault(name, []).append(content)
    return fields


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    s = stackmod.Stack(tmp_path_factory.mktemp("stack"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def client(stack) -> Client:
    return Client(stack)


@pytest.fixture(scope="session")
def oai(stack):
    """The stock OpenAI SDK with the search team's key."""
    import openai
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)


@pytest.fixture(scope="session")
def claude_sdk(stack):
    """The stock Anthropic SDK with the search team's key."""
    import anthropic
    return anthropic.Anthropic(base_url=stack.url, api_key=SEARCH_KEY, max_retries=0)


def upstream_body(stack) -> dict:
    """The last request body the mock provider received: what the gateway sent upstream."""
    return requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()


def error_of(resp: requests.Response) -> dict:
    body = resp.json()
    assert body.get("type") == "error", body
    return body["error"]


def read_until_cut(resp: requests.Response) -> bytes:
    """What a client reads of a streamed answer the provider (or the gateway)
    cut: every byte up to the cut, without the error the cut raises."""
    got = b""
    try:
        for chunk in resp.iter_content(None):
            got += chunk
    except requests.exceptions.ChunkedEncodingError:
        pass  # the stream was cut: this is what the client sees
    return got


def sse_data(text: str) -> list[str]:
    """The data payloads of an SSE stream, in order."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        if data:
            out.append("\n".join(data))
    return out


def raw_http(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Sends bytes as they are (requests would refuse them) and reads the
    answer: until the connection closes, or its content-length is read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(request)
        out = b""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                out += d
                head, sep, body = out.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), None)
                if sep and length is not None and len(body) >= length:
                    break
        except socket.timeout:
            pass
    return out


def status_of(resp: bytes) -> int:
    return int(resp.split(b" ", 2)[1])


def websocket_upgrade(url: str, path: str) -> tuple[int, bytes]:
    """A WebSocket handshake (RFC 6455) as Codex opens one: the status and body answered."""
    port = int(url.rsplit(":", 1)[1])
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           f"Authorization: Bearer {SEARCH_KEY}\r\n\r\n").encode()
    resp = raw_http(port, req, timeout=10)
    return status_of(resp), resp.partition(b"\r\n\r\n")[2]


def mock_stats(stack) -> dict:
    """What the mock provider has served: requests, input and output tokens."""
    return requests.get(stack.mock.url + "/mock/stats", timeout=5).json()


def wait_until(pred, timeout=15.0, step=0.1, what="condition"):
    """`pred()`'s first truthy value, asked every `step` seconds; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def new_openai_key(stack, team: str, project: str, **extra):
    """A key made through the control service, once this Envoy takes it:
    the key, and the stock OpenAI client that holds it."""
    import openai
    key = stack.control.api("POST", "/v1/keys", {"team": team, "project": project, **extra}, expect=201)[1]
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key=key["key"], max_retries=0)

    def works():
        try:
            client.models.list()
            return True
        except openai.AuthenticationError:
            return False
    wait_until(works, what="the new key to reach Envoy")
    return key["key"], client

def access_log_has(stack, *texts: str, timeout: float = 5.0) -> bool:
    """Whether Envoy's access log holds every text, once written (Envoy
    writes it every 200 ms here)."""
    deadline = time.monotonic() + timeout
    while True:
        log = stack.access_log.read_text()
        if all(t in log for t in texts) or time.monotonic() > deadline:
            return all(t in log for t in texts)
        time.sleep(0.1)
