import json, socket, time
import requests
from conftest import SEARCH_KEY, error_of
from test_hardening import raw_http, status_of

def show(name, r):
    print(f"\n=== {name}: {r.status_code} {r.headers.get('content-type')} {r.text[:300]!r}")

def test_probe(stack, client):
    port = int(client.url.rsplit(":", 1)[1])
    body = json.dumps({"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": "x" * 3000}]}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SEARCH_KEY.encode() +
           b"\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(req)
        first = c.recv(65536)
        print("\n=== expect first:", first[:200])
        c.sendall(body)
        out = b""
        c.settimeout(3)
        try:
            while True:
                d = c.recv(65536)
                if not d: break
                out += d
                if b"\r\n0\r\n\r\n" in out or (b"chatcmpl" in out and out.endswith(b"}")): break
        except socket.timeout:
            pass
        print("=== expect then:", out[:300])
    # chunked request body
    def gen():
        yield body[:100]; yield body[100:]
    r = requests.post(client.url + "/v1/chat/completions", data=gen(), headers={"authorization": f"Bearer {SEARCH_KEY}", "content-type": "application/json"})
    show("chunked", r)
    for name, b in [
        ("bom", b"\xef\xbb\xbf" + body),
        ("lone surrogate", json.dumps({"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": "a"}]}).replace('"a"', '"\\ud800"').encode()),
        ("stream string", json.dumps({"model": "openai/gpt-5.4", "stream": "true", "messages": [{"role": "user", "content": "a"}]}).encode()),
        ("max_tokens 0", json.dumps({"model": "openai/gpt-5.4", "max_tokens": 0, "messages": [{"role": "user", "content": "a"}]}).encode()),
        ("max_completion_tokens -1", json.dumps({"model": "openai/gpt-5.4", "max_completion_tokens": -1, "messages": [{"role": "user", "content": "a"}]}).encode()),
        ("n 0", json.dumps({"model": "openai/gpt-5.4", "n": 0, "messages": [{"role": "user", "content": "a"}]}).encode()),
        ("n 1.5", json.dumps({"model": "openai/gpt-5.4", "n": 1.5, "messages": [{"role": "user", "content": "a"}]}).encode()),
        ("messages empty", json.dumps({"model": "openai/gpt-5.4", "messages": []}).encode()),
        ("array top", b"[1,2]"),
        ("trailing garbage", body + b"xyz"),
        ("two docs", body + body),
        ("text/plain", body),
        ("empty", b""),
        ("nul in key", json.dumps({"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": "a"}], "me\u0000ta": 1}).encode()),
    ]:
        ct = "text/plain" if name == "text/plain" else "application/json"
        r = requests.post(client.url + "/v1/chat/completions", data=b, headers={"authorization": f"Bearer {SEARCH_KEY}", "content-type": ct})
        show(name, r)
    for m in ("GET", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"):
        r = requests.request(m, client.url + "/v1/chat/completions", headers={"authorization": f"Bearer {SEARCH_KEY}"})
        show(m, r)
        r = requests.request(m, client.url + "/v1/chat/completions")
        show(m + " nokey", r)
