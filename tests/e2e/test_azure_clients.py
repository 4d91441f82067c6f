"""Applications written for Azure OpenAI, pointed at the gateway: the stock
OpenAI SDK's `AzureOpenAI` client with the gateway as its `azure_endpoint`
and a virtual key as its `api_key`, code unchanged otherwise. It sends
`/openai/deployments/{deployment}/chat/completions?api-version=…` (and
`embeddings`), `/openai/responses?api-version=…` and `/openai/models`, its
key in an `api-key` header (openai-python `lib/azure.py`); the gateway
refused every one (404 "not routed", then 401 with no key it read). The
deployment names the model (a route's model name), as Azure runs the
deployment whatever the body says; the key never goes upstream, nor the
`api-version`, which no provider behind the gateway takes."""
from __future__ import annotations

import openai
import pytest
import requests

from conftest import RESTRICTED_KEY, SEARCH_KEY, expected_cost

API_VERSION = "2024-10-21"


@pytest.fixture(scope="module")
def azure(stack):
    return openai.AzureOpenAI(azure_endpoint=stack.url, api_key=SEARCH_KEY, api_version=API_VERSION, max_retries=0)


def test_an_azure_client_chats_streams_and_embeds_through_the_gateway(stack, azure, client):
    raw = azure.chat.completions.with_raw_response.create(model="openai/gpt-5.4", max_completion_tokens=50,
                                                          messages=[{"role": "user", "content": "Say hi"}])
    r = raw.parse()
    assert r.choices[0].message.content
    # The provider got OpenAI's path, without the Azure client's api-version, and never the virtual key.
    assert (raw.headers["x-mock-path"], raw.headers["x-mock-api-key"]) == ("/v1/chat/completions", ""), dict(raw.headers)
    assert raw.headers["x-mock-auth"] == "Bearer sk-mock-openai"
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["model_requested"], rec["model_upstream"], rec["key_id"]) == ("openai_chat", "openai/gpt-5.4", "gpt-5.4", "demo-search")
    assert rec["cost_micros"] == expected_cost("openai/gpt-5.4", r.usage.prompt_tokens, r.usage.completion_tokens) > 0
    raw = azure.chat.completions.with_raw_response.create(model="openai/gpt-5.4", stream=True, stream_options={"include_usage": True},
                                                          messages=[{"role": "user", "content": "Count to three"}])
    chunks = list(raw.parse())
    usage = [c.usage for c in chunks if c.usage][0]
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["stream"] is True and rec["usage"]["output_tokens"] == usage.completion_tokens
    raw = azure.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
    e = raw.parse()
    assert len(e.data[0].embedding) > 0 and raw.headers["x-mock-path"] == "/v1/embeddings"
    assert client.record(raw.headers["x-tollgate-request-id"])["usage"]["input_tokens"] == e.usage.prompt_tokens


def test_an_azure_client_reaches_responses_and_the_model_list(stack, azure, client):
    raw = azure.responses.with_raw_response.create(model="openai/gpt-5.4", input="Say hi", max_output_tokens=50)
    r = raw.parse()
    assert r.output_text and raw.headers["x-mock-path"] == "/v1/responses"
    assert client.record(raw.headers["x-tollgate-request-id"])["api"] == "openai_responses"
    ids = [m.id for m in azure.models.list()]
    assert "openai/gpt-5.4" in ids and "cheap" in ids


def test_the_deployment_in_the_path_is_the_model_run_and_the_keys_to_hold(stack, client):
    """Azure runs the deployment the path names, whatever the body's
    `model` (its REST form sends none): so does the gateway, routed and
    priced as that model, and held to the key's models by it."""
    url = stack.url + "/openai/deployments/cheap/chat/completions?api-version=" + API_VERSION
    for body in ({"messages": [{"role": "user", "content": "hi"}]},
                 {"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}):
        r = requests.post(url, json=body, headers={"api-key": SEARCH_KEY}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["x-mock-model"] == "deepseek-v4" and r.headers["x-mock-path"] == "/chat/completions"
        rec = client.record(r.headers["x-tollgate-request-id"])
        assert (rec["model_requested"], rec["provider"]) == ("cheap", "deepseek"), rec
    # A key held to "cheap" and "default" cannot reach another model through its deployment.
    r = requests.post(stack.url + "/openai/deployments/openai%2Fgpt-5.4/chat/completions", timeout=10,
                      json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}, headers={"api-key": RESTRICTED_KEY})
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed", r.text
    r = requests.post(stack.url + "/openai/deployments/claude-sonnet-4-6/chat/completions", timeout=10,
                      json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}, headers={"api-key": RESTRICTED_KEY})
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed", r.text
    # Without a key it reads, nothing passes.
    r = requests.post(url, json={"messages": []}, headers={"api-key": "tg-not-a-key"}, timeout=10)
    assert r.status_code == 401, r.text
