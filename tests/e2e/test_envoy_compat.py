"""What must hold on every supported Envoy (run per version by `make test-matrix`):
never route wrong silently when the body-pause knob is missing, and big bodies
next to other body-reading filters arrive whole."""
from __future__ import annotations

import json
import time

import pytest
import requests

import stack as sm
from conftest import SEARCH_KEY, expected_cost


def envoy_with(stack, tmp_path, edit) -> sm.Envoy:
    cfg = sm.demo_config(sm.free_port(), sm.free_port(), stack.mock.port, access_log=str(tmp_path / "a.log"),
                         control_port=stack.control.port)
    edit(cfg)
    return sm.Envoy(cfg, tmp_path, concurrency=1, name="compat")


def hcm(cfg: dict) -> dict:
    return cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def mock_requests(stack) -> int:
    return requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]


def test_without_the_pause_knob_requests_fail_closed_and_say_why(stack, tmp_path):
    def edit(cfg):
        w = sm._wasm_filter(cfg)["typed_config"]["config"]
        w.pop("allow_on_headers_stop_iteration")
        pc = json.loads(w["configuration"]["value"])
        pc["body_wait_ms"] = 1000
        w["configuration"]["value"] = json.dumps(pc)

    e = envoy_with(stack, tmp_path, edit)
    try:
        before = mock_requests(stack)
        t0 = time.monotonic()
        r = requests.post(e.url + "/v1/chat/completions", json={"model": "openai/gpt-5.4", "messages": [
            {"role": "user", "content": "hi"}]}, headers={"authorization": f"Bearer {SEARCH_KEY}"}, timeout=30)
        took = time.monotonic() - t0
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["code"] == "gateway_misconfigured" and "allow_on_headers_stop_iteration" in err["message"]
        assert took < 5, f"answered after {took:.1f} s, not left hanging"
        assert mock_requests(stack) == before, "nothing went to a provider"
        deadline = time.monotonic() + 5
        while "allow_on_headers_stop_iteration: true' and Envoy never passes bodies" not in e.log():
            assert time.monotonic() < deadline, "one clear log line"
            time.sleep(0.1)
    finally:
        e.stop()


LUA_READS_BODY = """
function envoy_on_request(request_handle)
  local body = request_handle:body()
  request_handle:headers():add("x-lua-saw-bytes", tostring(body:length()))
end
"""


@pytest.mark.parametrize("other", ["buffer", "lua"])
def test_a_5mb_body_next_to_another_body_filter_arrives_whole(stack, tmp_path, other):
    def edit(cfg):
        filters = hcm(cfg)["http_filters"]
        if other == "buffer":
            f = {"name": "envoy.filters.http.buffer", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                "max_request_bytes": 16 << 20}}
        else:
            f = {"name": "envoy.filters.http.lua", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "default_source_code": {"inline_string": LUA_READS_BODY}}}
        filters.insert(0, f)  # before Tollgate: it reads the whole body first

    e = envoy_with(stack, tmp_path, edit)
    try:
        content = "0123456789abcdef" * (5 * 1024 * 1024 // 16)  # 5 MiB of prompt
        body = {"model": "openai/gpt-5.4", "max_tokens": 10, "messages": [{"role": "user", "content": content}]}
        r = requests.post(e.url + "/v1/chat/completions", json=body,
                          headers={"authorization": f"Bearer {SEARCH_KEY}"}, timeout=60)
        assert r.status_code == 200, r.text[:300]
        assert r.headers["x-tollgate-provider"] == "openai" and r.headers["x-mock-path"] == "/v1/chat/completions"
        u = r.json()["usage"]
        # the mock counts 1 token per 4 bytes of what it received, + 4 per message: all 5 MiB arrived
        assert u["prompt_tokens"] == len(content) // 4 + 4, u
        assert int(r.headers["x-tollgate-cost-micros"]) == expected_cost(
            "openai/gpt-5.4", u["prompt_tokens"], u["completion_tokens"], cached=u["prompt_tokens_details"]["cached_tokens"])
    finally:
        e.stop()
