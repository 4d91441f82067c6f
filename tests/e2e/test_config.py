"""Configuration: Envoy refuses a bad plugin configuration and says which
field; the production example validates and its Envoy-injected credentials
work; optional behaviours (other_paths, cost_headers) do what they say."""
from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import time

import pytest
import requests
import yaml

import stack as sm
from conftest import SEARCH_KEY, Client, error_of, expected_cost

PRODUCTION = sm.ROOT / "envoy" / "production" / "envoy.yaml"


def start_with_plugin_config(tmp_path, raw: str) -> sm.Envoy:
    cfg = sm.demo_config(sm.free_port(), sm.free_port(), sm.free_port(), access_log=str(tmp_path / "a.log"),
                         raw_plugin_config=raw)
    return sm.Envoy(cfg, tmp_path, wait=False)


def good_plugin_config() -> dict:
    return sm.plugin_config(yaml.safe_load(sm.DEMO_CONFIG.read_text()))


@pytest.mark.parametrize("mutate, field", [
    (lambda c: c["routes"][1].update(provider="azure"), "routes[1].provider"),
    (lambda c: c["keys"][0].update(key_hash="tg-demo-search-key"), "keys[0].key_hash"),
    (lambda c: c["providers"][0].update(format="grpc"), "providers[0].format"),
    (lambda c: c["pricing"]["openai/gpt-5.4"].update(output=1.5), "pricing.openai/gpt-5.4.output"),
    (lambda c: c.update(max_request_bytes=10), "max_request_bytes"),
    (lambda c: c.update(unknown_knob=True), "unknown_knob"),
    (lambda c: c.update(access_log_fields=["team", "cost"]), "access_log_fields[1]"),
    (lambda c: c.update(guardrails={"custom": [{"name": "x", "pattern": "("}]}), "guardrails.custom[0].pattern"),
    (lambda c: c.update(guardrails={"teams": {"labs": {"passport": "block"}}}), "guardrails.teams.labs"),
])
def test_envoy_refuses_bad_plugin_config_and_names_the_field(tmp_path, mutate, field):
    pc = good_plugin_config()
    mutate(pc)
    envoy = start_with_plugin_config(tmp_path, json.dumps(pc))
    try:
        rc = envoy.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        envoy.stop()
        pytest.fail("Envoy started with a bad plugin configuration")
    assert rc != 0
    lines = [line for line in envoy.log().splitlines() if "invalid tollgate configuration" in line]
    assert lines, envoy.log()[-3000:]
    assert f"field '{field}'" in lines[0], lines[0]


def test_envoy_refuses_plugin_config_that_is_not_json(tmp_path):
    envoy = start_with_plugin_config(tmp_path, "keys: [oops")
    assert envoy.proc.wait(timeout=30) != 0
    assert "invalid tollgate configuration: field '(root)'" in envoy.log()


def test_validate_mode_catches_a_bad_plugin_config(tmp_path):
    pc = good_plugin_config()
    pc["routes"][0]["provider"] = "nope"
    cfg = sm.demo_config(1, 2, 3, raw_plugin_config=json.dumps(pc))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    p = subprocess.run([str(sm.ENVOY_BIN), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "routes[0].provider" in p.stdout + p.stderr


def production_config(wasm: str) -> dict:
    return yaml.safe_load(PRODUCTION.read_text().replace("/etc/tollgate/tollgate_filter.wasm", wasm))


def test_production_example_validates(tmp_path):
    path = tmp_path / "prod.json"
    path.write_text(json.dumps(production_config(str(sm.WASM))))
    p = subprocess.run([str(sm.ENVOY_BIN), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "OK" in p.stdout + p.stderr


def test_production_routes_inject_provider_keys_from_envoy_environment(tmp_path):
    """The production layout, pointed at the mock over plain HTTP: the keys come
    from Envoy's environment, not from the filter configuration."""
    mock = sm.Mock(log_path=tmp_path / "mock.log")
    cfg = production_config(str(sm.WASM))
    cfg["admin"]["address"]["socket_address"]["port_value"] = sm.free_port()
    listener = cfg["static_resources"]["listeners"][0]
    listener["address"]["socket_address"].update(address="127.0.0.1", port_value=sm.free_port())
    wasm = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["config"]
    pc = json.loads(wasm["configuration"]["value"])
    pc["keys"][0]["key_hash"] = hashlib.sha3_256(SEARCH_KEY.encode()).hexdigest()
    wasm["configuration"]["value"] = json.dumps(pc)
    for c in cfg["static_resources"]["clusters"]:
        c.pop("transport_socket")
        c["type"] = "STATIC"
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] = \
            {"address": "127.0.0.1", "port_value": mock.port}
    env = {"OPENAI_API_KEY": sm.PROVIDER_KEYS["openai"], "DEEPSEEK_API_KEY": sm.PROVIDER_KEYS["deepseek"],
           "ANTHROPIC_API_KEY": sm.PROVIDER_KEYS["anthropic"]}
    envoy = sm.Envoy(cfg, tmp_path, env=env)
    try:
        h = {"authorization": f"Bearer {SEARCH_KEY}"}
        body = {"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}
        r = requests.post(envoy.url + "/v1/chat/completions", json=body, headers=h, timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["x-mock-auth"] == "Bearer sk-mock-deepseek"
        assert r.headers["x-mock-tollgate-headers"] == ""
        r = requests.post(envoy.url + "/v1/chat/completions", json={**body, "model": "openai/gpt-5.4"}, headers=h, timeout=10)
        assert r.status_code == 200 and r.headers["x-mock-auth"] == "Bearer sk-mock-openai"
        # unpriced_models: deny in the production example
        r = requests.post(envoy.url + "/v1/chat/completions", json={**body, "model": "openai/gpt-9"}, headers=h, timeout=10)
        assert r.status_code == 400 and error_of(r)["code"] == "model_not_priced"
    finally:
        envoy.stop()
        mock.stop()


@pytest.fixture(scope="module")
def pass_stack(tmp_path_factory):
    def patch(pc):
        pc["other_paths"] = "pass"
        pc["cost_headers"] = False
    s = sm.Stack(tmp_path_factory.mktemp("pass"), plugin_patch=patch)
    yield s
    s.stop()


def test_other_paths_pass_through_when_configured(pass_stack):
    r = requests.post(pass_stack.url + "/v1/audio/voices", json={"name": "x"},
                      headers={"x-tollgate-cluster": "openai"}, timeout=10)
    # No route picks a cluster for it (and the client cannot): Envoy's own 404/503, not Tollgate's.
    assert r.status_code in (404, 503)
    assert "x-mock-host" not in r.headers


def test_a_path_that_names_a_chat_endpoint_only_once_normalised_is_refused_not_passed(pass_stack):
    """With `other_paths: pass`, "/v1//chat/completions" and the like were
    passed untouched, with no key check and no accounting; a provider
    behind a server that merges slashes or decodes escapes would serve them
    as chat. Now they are refused before anything is sent, whichever key."""
    body = {"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}
    for path in ("/v1//chat/completions", "/v1/./chat/completions", "/v1/chat%2Fcompletions", "/V1/chat/completions",
                 "/v1/chat/completions;x=1", "/v1/messages//", "/v1beta/models/gemini-2.5-flash%3AgenerateContent"):
        for key in (None, SEARCH_KEY):
            h = {"x-tollgate-cluster": "openai"} | ({"authorization": f"Bearer {key}"} if key else {})
            # http.client sends the path as written (requests would remove the dot segments).
            conn = http.client.HTTPConnection("127.0.0.1", pass_stack.envoy.listen_port, timeout=10)
            conn.request("POST", path, body=json.dumps(body), headers=h | {"content-type": "application/json"})
            r = conn.getresponse()
            text = r.read().decode()
            conn.close()
            assert r.status == 400, (path, r.status, text)
            err = json.loads(text)["error"]
            assert err["code"] == "invalid_path" and "/v1/chat/completions" in err["message"], (path, text)
            assert r.getheader("x-mock-host") is None
    # The endpoints as written, and a real other path, are what they were.
    assert Client(pass_stack).chat("openai/gpt-5.4").status_code == 200
    r = requests.get(pass_stack.url + "/v1/messages/batches/msgbatch_1", timeout=10)
    assert r.status_code in (404, 503) and "x-mock-host" not in r.headers


def test_without_cost_headers_the_response_is_not_held_but_still_priced(pass_stack):
    c = Client(pass_stack)
    r = c.chat("openai/gpt-5.4", headers={"x-mock-output-tokens": "11"})
    assert r.status_code == 200
    assert "x-tollgate-cost-micros" not in r.headers
    u = r.json()["usage"]
    rec = c.record(r.headers["x-tollgate-request-id"])
    assert rec["cost_micros"] == expected_cost("openai/gpt-5.4", u["prompt_tokens"], 11)
