"""OpenAI's background responses through Envoy (`responses.create(background=True)`,
then `responses.retrieve` / `cancel`, or a background stream and its resumption
`responses.retrieve(id, stream=True, starting_after=n)`, with the stock SDK).

Before, `background: true` was refused (400): deep-research and `*-pro`
models, which OpenAI's background guide points to for long tasks, could not
be used behind the gateway. Now the create is planned, guarded and held to
budgets as any request, with who asked written into the response's
metadata, and the response is charged when a read of it shows it ended (its
`usage`, or for one cancelled before its end, which reports none, the input
Tollgate estimated and the output it shows), once, under `tg-bg-<id>`.
The mock runs a background response as the API reference describes
(`queued`, `in_progress`, then done; a cancel answers the output so far and
`usage: null`: openai/openai-openapi, `cancelResponse`'s example;
tests/mock-provider/src/objects/mod.rs)."""
from __future__ import annotations

import time

import openai
import pytest
import requests

import stack as sm
from conftest import SEARCH_KEY, error_of, expected_cost, mock_stats, new_openai_key, wait_until


def records(s: sm.Stack, rid: str) -> list[dict]:
    return [r for r in s.envoy.usage_records() if r["id"] == rid]


def spend(s: sm.Stack, key_id: str) -> dict:
    return s.control.api("GET", f"/v1/spend?scope_type=key&scope_id={key_id}", expect=200)[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # The demo's configuration, guardrails included (its policy scans requests only).
    s = sm.Stack(tmp_path_factory.mktemp("background"))
    yield s
    s.stop()


def test_a_background_response_is_charged_once_to_its_creator_when_a_read_shows_it_ended(stack):
    _, owner = new_openai_key(stack, "deep", "research")
    other = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    before = mock_stats(stack)
    raw = owner.responses.with_raw_response.create(model="openai/gpt-5.4", input="Write a long report on tide pools.", background=True,
                                                   metadata={"job": "report"}, extra_headers={"x-mock-background-ms": "1500"})
    made = raw.parse()
    assert raw.headers["x-mock-auth"] == "Bearer sk-mock-openai", "the provider's key, never the virtual one"
    assert (made.status, made.background, made.usage) == ("queued", True, None)
    assert made.metadata["job"] == "report" and made.metadata["tollgate_team"] == "deep" and made.metadata["tollgate_project"] == "research"
    assert int(made.metadata["tollgate_input_tokens"]) > 0
    key_id = made.metadata["tollgate_key"]
    # Running: read, not charged.
    assert other.responses.retrieve(made.id).status == "in_progress"
    rid = f"tg-bg-{made.id}"
    assert not records(stack, rid) and "x-tollgate-cost-micros" not in raw.headers
    # Another team's key polls it: it is still the creator's to pay.
    done = wait_until(lambda: (r := other.responses.retrieve(made.id)).status == "completed" and r, what="the response to end")
    ran = mock_stats(stack)
    assert (ran["input_tokens"] - before["input_tokens"], ran["output_tokens"] - before["output_tokens"]) == (
        done.usage.input_tokens, done.usage.output_tokens), "its usage is what the provider billed"
    rec = wait_until(lambda: records(stack, rid), what="the response's record")[0]
    cost = expected_cost("openai/gpt-5.4", done.usage.input_tokens, done.usage.output_tokens, cached=done.usage.input_tokens_details.cached_tokens)
    assert (rec["key_id"], rec["team"], rec["project"], rec["api"], rec["usage_source"]) == (key_id, "deep", "research", "openai_responses", "provider")
    assert rec["cost_micros"] == cost > 0 and rec["priced"] is True and rec["model_served"] == done.model
    # Read again and again, by either key, cancelled after its end (the API answers it as it is): one charge.
    for c in (owner, other, owner):
        assert c.responses.retrieve(made.id).output_text == done.output_text
    assert owner.responses.cancel(made.id).status == "completed"
    got = wait_until(lambda: (s := spend(stack, key_id))["cost_micros"] == cost and s, what="the charge in the ledger")
    time.sleep(1.5)
    assert spend(stack, key_id)["cost_micros"] == cost and spend(stack, key_id)["requests"] == got["requests"] == 1, "counted once"
    assert len(records(stack, rid)) == 1, "logged once on this Envoy"


def test_a_background_stream_is_charged_at_its_end_and_its_resumption_does_not_charge_again(stack):
    _, c = new_openai_key(stack, "streams", "research")
    events = list(c.responses.create(model="openai/gpt-5.4", input="Summarise the tide tables.", background=True, stream=True))
    assert events[0].response.background is True and events[-1].type == "response.completed"
    final = events[-1].response
    rid = f"tg-bg-{final.id}"
    rec = wait_until(lambda: records(stack, rid), what="the stream's record")[0]
    cost = expected_cost("openai/gpt-5.4", final.usage.input_tokens, final.usage.output_tokens, cached=final.usage.input_tokens_details.cached_tokens)
    assert (rec["cost_micros"], rec["stream"], rec["team"]) == (cost, True, "streams")
    # Resumed after its third event, as the SDK does after a dropped connection: the same end, the same charge.
    resumed = list(c.responses.retrieve(final.id, stream=True, starting_after=2))
    assert resumed[0].sequence_number == 3 and resumed[-1].type == "response.completed"
    assert c.responses.retrieve(final.id).status == "completed"
    key_id = final.metadata["tollgate_key"]
    wait_until(lambda: spend(stack, key_id)["cost_micros"] == cost, what="the charge in the ledger")
    time.sleep(1.5)
    assert (spend(stack, key_id)["cost_micros"], spend(stack, key_id)["requests"], len(records(stack, rid))) == (cost, 1, 1)

    # A client that leaves the stream early: the response runs on at the provider, and is charged when read.
    stream = c.responses.create(model="openai/gpt-5.4", input="Another long one.", background=True, stream=True,
                                extra_headers={"x-mock-chunk-delay-ms": "100"})
    first = next(iter(stream))
    stream.close()
    rid = f"tg-bg-{first.response.id}"
    time.sleep(1.0)
    assert not records(stack, rid), "nothing known yet, nothing charged"
    done = wait_until(lambda: (r := c.responses.retrieve(first.response.id)).status == "completed" and r, what="the response to end")
    rec = wait_until(lambda: records(stack, rid), what="the read's record")[0]
    assert rec["cost_micros"] == expected_cost("openai/gpt-5.4", done.usage.input_tokens, done.usage.output_tokens,
                                               cached=done.usage.input_tokens_details.cached_tokens) > 0

    # One that leaves after output came has taken it: charged then, as any stream left early
    # (estimated), under the same id, so a later read does not count it again.
    stream = c.responses.create(model="openai/gpt-5.4", input="And one more.", background=True, stream=True,
                                extra_headers={"x-mock-chunk-delay-ms": "50", "x-mock-output-tokens": "200"})
    seen = []
    for ev in stream:
        seen.append(ev)
        if sum(e.type == "response.output_text.delta" for e in seen) == 3:
            break
    stream.close()
    rid = f"tg-bg-{seen[0].response.id}"
    rec = wait_until(lambda: records(stack, rid), what="the left stream's record")[0]
    assert (rec["usage_source"], rec["outcome"]) == ("estimated", "client_aborted") and 0 < rec["usage"]["output_tokens"] < 200, rec
    assert c.responses.retrieve(seen[0].response.id).status in ("in_progress", "completed")
    done = wait_until(lambda: (r := c.responses.retrieve(seen[0].response.id)).status == "completed" and r, what="the response to end")
    key_id = done.metadata["tollgate_key"]
    time.sleep(1.5)
    # Counted once in the ledger: the estimate or the read's exact count, whichever reached it
    # first (each worker ships its own records), never both; logged once on this Envoy.
    others = sum(r["cost_micros"] for r in stack.envoy.usage_records() if r["key_id"] == key_id and r["id"] != rid)
    exact = expected_cost("openai/gpt-5.4", done.usage.input_tokens, done.usage.output_tokens, cached=done.usage.input_tokens_details.cached_tokens)
    assert len(records(stack, rid)) == 1 and spend(stack, key_id)["cost_micros"] - others in (rec["cost_micros"], exact), (spend(stack, key_id), others, rec, exact)


def test_a_resumed_stream_left_before_its_end_is_charged_what_it_took_to_its_creator(stack):
    _, c = new_openai_key(stack, "resumers", "research")
    made = c.responses.create(model="openai/gpt-5.4", input="A report to read as a stream.", background=True,
                              extra_headers={"x-mock-output-tokens": "200"})
    other = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    # Resumed after event 2 (the events that say what it is and whose come before): read from the start, passed on after it.
    stream = other.responses.retrieve(made.id, stream=True, starting_after=2, extra_headers={"x-mock-chunk-delay-ms": "50"})
    seen = []
    for ev in stream:
        seen.append(ev)
        if len(seen) == 4:
            break
    stream.close()
    assert [e.sequence_number for e in seen] == [3, 4, 5, 6]
    rid = f"tg-bg-{made.id}"
    rec = wait_until(lambda: records(stack, rid), what="the left stream's record")[0]
    assert (rec["usage_source"], rec["error_code"], rec["team"]) == ("estimated", "response_cut", "resumers"), rec
    assert rec["usage"]["input_tokens"] == int(made.metadata["tollgate_input_tokens"]) and rec["usage"]["output_tokens"] > 0
    # Read whole later: the same id, not counted again.
    assert c.responses.retrieve(made.id).status == "completed"
    time.sleep(1.0)
    assert len(records(stack, rid)) == 1


def test_a_response_cancelled_before_its_end_is_charged_its_estimate(stack):
    _, c = new_openai_key(stack, "cancels", "research")
    made = c.responses.create(model="openai/gpt-5.4", input="A report that will not be finished.", background=True,
                              extra_headers={"x-mock-background-ms": "30000"})
    cancelled = c.responses.cancel(made.id)
    assert (cancelled.status, cancelled.usage) == ("cancelled", None)
    shown = sum(len(p.text.encode()) for item in cancelled.output for p in item.content)
    rec = wait_until(lambda: records(stack, f"tg-bg-{made.id}"), what="the cancel's record")[0]
    assert (rec["usage_source"], rec["error_code"], rec["team"]) == ("estimated", "response_cancelled", "cancels")
    assert rec["usage"]["input_tokens"] == int(made.metadata["tollgate_input_tokens"]) > 0
    assert rec["usage"]["output_tokens"] == -(-shown // 4) > 0
    assert rec["cost_micros"] == expected_cost("openai/gpt-5.4", rec["usage"]["input_tokens"], rec["usage"]["output_tokens"])
    # Read after it: the same record, counted once.
    assert c.responses.retrieve(made.id).status == "cancelled"
    time.sleep(1.0)
    assert len(records(stack, f"tg-bg-{made.id}")) == 1


def test_a_foreground_response_read_back_is_not_charged_again(stack):
    c = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    raw = c.responses.with_raw_response.create(model="openai/gpt-5.4", input="hello")
    made = raw.parse()
    assert made.background is False and int(raw.headers["x-tollgate-cost-micros"]) > 0
    assert "tollgate_key" not in made.metadata, "only background responses carry their owner"
    assert c.responses.retrieve(made.id).status == "completed"
    marker = c.chat.completions.with_raw_response.create(model="cheap", messages=[{"role": "user", "content": "after"}])
    wait_until(lambda: records(stack, marker.headers["x-tollgate-request-id"]), what="a later record")
    assert not records(stack, f"tg-bg-{made.id}")


def test_background_requests_that_could_not_be_charged_are_refused_before_they_run(stack):
    c = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    before = mock_stats(stack)

    def refused(code="unsupported_field", param="background", **kw):
        with pytest.raises(openai.BadRequestError) as e:
            c.responses.create(**{"model": "openai/gpt-5.4", "input": "x", "background": True, **kw})
        assert (e.value.body["code"], e.value.body.get("param")) == (code, param), e.value.body
        return e.value.body["message"]
    # A provider that does not run it (a route translated to chat completions or to Anthropic's
    # Messages; another OpenAI-format provider than the one its reads go to: the unit tests).
    for model in ("cheap", "anthropic/claude-sonnet-4-6"):
        refused("untranslatable_field", model=model)
    # Its output would be readable in the conversation, uncharged.
    conv = c.conversations.create()
    refused(conversation=conv.id)
    # A second model's cost, reported only in the create's own answer.
    refused(tools=[{"type": "image_generation"}])
    # The client cannot name another owner, nor leave no room for Tollgate's members.
    refused("reserved_metadata", "metadata", metadata={"tollgate_key": "someone-else"})
    refused("metadata_full", "metadata", metadata={f"m{i}": "v" for i in range(13)})
    assert mock_stats(stack)["requests"] == before["requests"]
    # What only the provider checks, it refuses: a background response must be stored.
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="openai/gpt-5.4", input="x", background=True, store=False)
    assert e.value.body["param"] == "store"
    # (Recorded as any refused request is: free, and seen.)
    rec = wait_until(lambda: records(stack, e.value.response.headers["x-tollgate-request-id"]), what="the refusal's record")[0]
    assert (rec["status"], rec["cost_micros"], rec["outcome"]) == (400, 0, "provider_error")
    # A key whose budget is spent starts none.
    _, broke = new_openai_key(stack, "broke-bg", "research")
    stack.control.api("PUT", "/v1/budgets/team/broke-bg", {"limit_micros": 1, "period": "monthly"}, expect=200)
    broke.responses.create(model="openai/gpt-5.4", input="spend it")

    def denied():
        try:
            broke.responses.create(model="openai/gpt-5.4", input="x", background=True)
            return False
        except openai.RateLimitError as e:
            return e
    assert wait_until(denied, what="the spent budget to refuse it").body["code"] == "budget_exhausted"


def test_hostile_reads_are_read_whole_or_not_at_all(stack):
    c = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    made = c.responses.create(model="openai/gpt-5.4", input="x", background=True)
    url = f"{stack.url}/v1/responses/{made.id}"
    auth = {"authorization": f"Bearer {SEARCH_KEY}"}
    # A range or a "not modified" could stand in for the object: removed, the whole object read and charged.
    r = requests.get(url, headers={**auth, "range": "bytes=0-9", "if-none-match": "*"}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    rec = wait_until(lambda: records(stack, f"tg-bg-{made.id}"), what="the record")[0]
    assert rec["cost_micros"] > 0
    # Compressed by the provider unasked: read decoded, the client gets it as sent.
    made2 = c.responses.create(model="openai/gpt-5.4", input="y", background=True)
    r = requests.get(f"{stack.url}/v1/responses/{made2.id}", headers={**auth, "x-mock-gzip": "1"}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    wait_until(lambda: records(stack, f"tg-bg-{made2.id}"), what="the gzipped read's record")
    # Metadata that could be read two ways is refused before it runs (by the demo's guardrails
    # first, which cannot read it either; without a policy, as a duplicate: the unit tests).
    before = mock_stats(stack)
    r = requests.post(stack.url + "/v1/responses", data=b'{"model":"openai/gpt-5.4","input":"x","background":true,"metadata":{"a":"1","a":"2"}}',
                      headers={**auth, "content-type": "application/json"}, timeout=10)
    assert (r.status_code, error_of(r)["code"]) == (400, "content_unreadable"), r.text
    assert mock_stats(stack)["requests"] == before["requests"]


def test_with_no_provider_keeping_stored_responses_a_background_one_is_refused_unsent(tmp_path):
    s = sm.Stack(tmp_path, plugin_patch=lambda c: c.pop("stored_objects"))
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
        before = mock_stats(s)
        with pytest.raises(openai.BadRequestError) as e:
            c.responses.create(model="openai/gpt-5.4", input="A long task", background=True)
        assert (e.value.code, e.value.param) == ("unsupported_field", "background")
        assert "'stored_objects': none" in e.value.message
        assert mock_stats(s)["requests"] == before["requests"], "nothing sent"
        assert c.responses.create(model="openai/gpt-5.4", input="Now", background=False).status == "completed"
    finally:
        s.stop()
