"""Claude Code (2.1.332, pinned in tests/node/package-lock.json; its npm
package brings the native binary) pointed at the gateway the way its users
do it: ANTHROPIC_BASE_URL and a virtual key as ANTHROPIC_API_KEY, every
non-essential call off (no network here). Its real requests (a system
prompt and tool list of thousands of tokens, `?beta=true`, its beta
headers) are served on Claude and, translated, on GPT, DeepSeek and Gemini,
each priced from the provider's usage.

It found a break our own tests had not: the client's `?beta=true` went on
to Gemini's OpenAI-compatible endpoint, and Google's frontend refuses a
query parameter it does not bind (the mock now does too): every Claude Code
request routed to Gemini failed."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import SEARCH_KEY, access_log_has, mock_stats, expected_cost

CLAUDE = Path(__file__).resolve().parents[1] / "node" / "node_modules" / "@anthropic-ai" / "claude-code-linux-x64" / "claude"


def claude(stack, tmp_path, model: str) -> subprocess.CompletedProcess:
    assert CLAUDE.exists(), "npm ci in tests/node is run by make setup"
    home = tmp_path / "claude-home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CLAUDE_CONFIG_DIR": str(home / ".claude"),
           "ANTHROPIC_BASE_URL": stack.url, "ANTHROPIC_API_KEY": SEARCH_KEY,
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
    return subprocess.run([str(CLAUDE), "-p", "Say hi", "--model", model], env=env, cwd=home, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("model, provider, upstream_path", [
    ("claude-sonnet-4-6", "anthropic", "/v1/messages?beta=true"),
    ("openai/gpt-5.4", "openai", "/v1/chat/completions"),
    ("deepseek/deepseek-v4", "deepseek", "/chat/completions"),
    ("google/gemini-2.5-flash", "google", "/v1beta/openai/chat/completions"),
])
def test_claude_code_runs_a_turn_through_the_gateway_priced_as_served(stack, client, tmp_path, model, provider, upstream_path):
    before_records, before = len(client.records()), mock_stats(stack)
    out = claude(stack, tmp_path, model)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-2000:])
    assert "mock answer from the provider" in out.stdout, out.stdout
    records = [r for r in client.records()[before_records:] if r["api"] == "anthropic_messages"]
    assert len(records) == 1, records
    rec, after = records[0], mock_stats(stack)
    assert (rec["outcome"], rec["usage_source"], rec["provider"], rec["stream"]) == ("ok", "provider", provider, True), rec
    u = rec["usage"]
    assert u["input_tokens"] > 1000, "Claude Code's own prompt, as the provider counted it"
    assert u["output_tokens"] == after["output_tokens"] - before["output_tokens"] > 0
    assert rec["cost_micros"] == expected_cost(f"{provider}/{rec['model_upstream']}", u["input_tokens"], u["output_tokens"],
                                               u["cached_input_tokens"], u["cache_write_tokens"]), rec
    assert rec["key_id"] == "demo-search"
    # Envoy's access log reads the path as sent upstream: `?beta=true` only to Anthropic.
    assert access_log_has(stack, f'"path":"{upstream_path}","project":"ranker","provider":"{provider}"')
