"""OpenAI's Codex CLI (0.171.0, pinned in tests/node/package-lock.json: the
npm package runs its native binary) pointed at the gateway as a custom
provider with a virtual key, as its users configure it
(`model_providers.<name>` with `base_url`, `env_key`, `wire_api =
"responses"`). It found two things our own tests had not: the mock refused
the `client_metadata` Codex sends on every request (the API takes it), and
a Responses request translated for another provider was refused for it
(it is dropped: telemetry ids nothing reads)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import requests

from conftest import SEARCH_KEY, access_log_has, mock_stats

CODEX = Path(__file__).resolve().parents[1] / "node" / "node_modules" / ".bin" / "codex"


def codex(stack, tmp_path, *config: str, model: str = "openai/gpt-5.4", options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    assert CODEX.exists(), "npm ci in tests/node is run by make setup"
    home = tmp_path / "codex-home"
    home.mkdir(exist_ok=True)
    provider = f'{{name="tollgate", base_url="{stack.url}/v1", env_key="TOLLGATE_KEY", wire_api="responses"{"".join(config)}}}'
    cmd = [str(CODEX), "exec", "--skip-git-repo-check", "--sandbox", "read-only", "-c", "model_provider=tollgate",
           "-c", f"model_providers.tollgate={provider}", *options, "-m", model, "Say hi"]
    env = {**os.environ, "CODEX_HOME": str(home), "HOME": str(home), "TOLLGATE_KEY": SEARCH_KEY}
    return subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True, timeout=120)


def test_codex_runs_a_turn_through_the_gateway_priced_as_served(stack, client, tmp_path):
    before_records, before = len(client.records()), mock_stats(stack)
    out = codex(stack, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mock answer from the provider" in out.stdout, out.stdout
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert sent["model"] == "gpt-5.4" and "client_metadata" in sent, "Codex's body went as it came, its model routed"
    records = [r for r in client.records()[before_records:] if r["api"] == "openai_responses"]
    assert len(records) == 1, records
    rec, after = records[0], mock_stats(stack)
    assert (rec["outcome"], rec["usage_source"], rec["stream"], rec["provider"]) == ("ok", "provider", True, "openai"), rec
    assert rec["usage"]["input_tokens"] == after["input_tokens"] - before["input_tokens"]
    assert rec["usage"]["output_tokens"] == after["output_tokens"] - before["output_tokens"]
    assert rec["cost_micros"] > 0 and rec["key_id"] == "demo-search"


def test_codex_over_a_websocket_falls_back_to_http_on_the_gateways_426(stack, client, tmp_path):
    """With `supports_websockets = true` Codex opens the Responses API over a
    WebSocket first; the gateway answers 426 and Codex falls back to HTTP."""
    before = len(client.records())
    out = codex(stack, tmp_path, ", supports_websockets=true")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mock answer from the provider" in out.stdout
    assert access_log_has(stack, '"method":"GET","model":null,"outcome":null,"output_tokens":null,"path":"/v1/responses"', '"status":426')
    assert [r["outcome"] for r in client.records()[before:] if r["api"] == "openai_responses"] == ["ok"]


def test_codex_naming_a_model_of_another_format_gets_a_clear_refusal(stack, tmp_path):
    """Codex offers OpenAI's hosted web search by default, which no other
    provider runs: the turn is refused, naming `tools`, before anything is
    sent (docs/translation.md)."""
    out = codex(stack, tmp_path, model="anthropic/claude-sonnet-4-6")
    assert out.returncode != 0
    assert "untranslatable_field" in out.stdout + out.stderr and "'tools'" in out.stdout + out.stderr


def test_codex_runs_a_turn_on_claude_with_its_web_search_off(stack, client, tmp_path):
    """With `web_search = "disabled"` Codex offers function tools and its
    sub-agent tools as a namespace, which only OpenAI's Responses API has;
    the turn was refused naming `tools`. The namespace goes to Claude flat
    (`multi_agent_v1__spawn_agent`), the answer comes back as Responses
    events Codex reads, and the turn is priced at Claude's price."""
    before = len(client.records())
    out = codex(stack, tmp_path, model="anthropic/claude-sonnet-4-6", options=("-c", 'web_search="disabled"'))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mock answer from the provider" in out.stdout, out.stdout
    up = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    names = [t["name"] for t in up["tools"]]
    assert "exec_command" in names and "multi_agent_v1__spawn_agent" in names, names
    records = [r for r in client.records()[before:] if r["api"] == "openai_responses"]
    assert [(r["outcome"], r["provider"], r["stream"]) for r in records] == [("ok", "anthropic", True)], records
    assert records[0]["cost_micros"] > 0 and records[0]["usage_source"] == "provider"
