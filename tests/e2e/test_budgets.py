"""Budgets that hold: keys and budgets from the control service, reserve-then-
settle in the filter, fleet-wide counting, alerts, failure modes."""
from __future__ import annotations

import base64

import http.server
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import stack as sm
from conftest import Client, error_of, expected_cost, wait_until


def new_key(control: sm.Control, team: str, project: str = "p1", key_id: str | None = None) -> dict:
    body = {"team": team, "project": project}
    if key_id:
        body["id"] = key_id
    return control.api("POST", "/v1/keys", body, expect=201)[1]


def key_works(url: str, key: str, costs: list | None = None) -> bool:
    r = requests.post(url + "/v1/chat/completions", json={"model": "cheap", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
                      headers={"authorization": f"Bearer {key}"}, timeout=10)
    if r.status_code == 200 and costs is not None:
        costs.append(int(r.headers["x-tollgate-cost-micros"]))
    return r.status_code == 200


def mock_stats(stack: sm.Stack) -> dict:
    return requests.get(stack.mock.url + "/mock/stats", timeout=5).json()


def spend(stack: sm.Stack, scope=None) -> dict:
    q = f"?scope_type={scope[0]}&scope_id={scope[1]}" if scope else ""
    return stack.control.api("GET", "/v1/spend" + q, expect=200)[1]


class Webhook:
    """A real HTTP server receiving the control service's alert webhooks."""

    def __init__(self):
        self.events = []
        hook = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                hook.events.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def hook():
    h = Webhook()
    yield h
    h.stop()


@pytest.fixture
def fresh(tmp_path, hook):
    s = sm.Stack(tmp_path, webhook=hook.url)
    yield s
    s.stop()


def test_api_key_with_budget_warns_then_stops_and_spend_adds_up(fresh, hook):
    c = fresh.control
    key = new_key(c, "growth", key_id="growth-app")
    assert key["key"].startswith("tg-") and "key_hash" in key
    assert key["key"] not in (fresh.workdir / "control.log").read_text()
    c.api("PUT", "/v1/budgets/team/growth", {"limit_micros": 4000, "period": "monthly", "timezone": "Europe/Paris"}, expect=200)
    t0 = time.monotonic()
    costs, warned, denied = [], [], None
    wait_until(lambda: key_works(fresh.url, key["key"], costs), what="the new key to work in Envoy")
    assert time.monotonic() - t0 < 5

    cli = Client(fresh)
    for _ in range(60):
        r = cli.chat("openai/gpt-5.4", key=key["key"], extra={"max_tokens": 20})
        if r.status_code == 429:
            denied = r
            break
        assert r.status_code == 200, r.text
        costs.append(int(r.headers["x-tollgate-cost-micros"]))
        if "x-tollgate-budget-warning" in r.headers:
            warned.append(r.headers["x-tollgate-budget-warning"])
        time.sleep(0.05)
    assert denied is not None, "the budget never stopped the key"
    assert warned and warned[0].startswith("team:growth at 8"), warned
    e = error_of(denied)
    assert (e["type"], e["code"], e["scope"]) == ("budget_exhausted", "budget_exhausted", "team:growth")
    assert e["limit_micros"] == 4000 and e["used_micros"] <= 4000
    assert e["resets_at"].endswith("T23:00:00Z")  # midnight in Paris
    assert "POST /v1/budget-requests" in e["message"] and '"scope_id": "growth"' in e["message"]
    assert int(denied.headers["retry-after"]) > 0
    assert denied.headers["x-tollgate-budget-remaining-micros"] == "0"

    # The spend in the control service is exactly what the provider reported, and within the limit.
    total = wait_until(lambda: (s := spend(fresh, ("team", "growth")))["cost_micros"] == sum(costs) and s,
                       what="all usage to reach the control service")
    assert total["requests"] >= len(costs)  # + the 429 record (cost 0)
    assert total["cost_micros"] <= 4000
    stats = mock_stats(fresh)
    assert (total["input_tokens"], total["output_tokens"]) == (stats["input_tokens"], stats["output_tokens"])

    # one soft and one hard alert for the period, delivered to the webhook
    alerts = wait_until(lambda: (a := c.api("GET", "/v1/alerts", expect=200)[1]["alerts"]) and len(a) >= 2 and a,
                        what="alerts")
    assert sorted(a["threshold"] for a in alerts) == ["hard", "soft"]
    wait_until(lambda: len(hook.events) >= 2, what="webhook deliveries")
    assert {ev["alert"]["threshold"] for ev in hook.events} == {"soft", "hard"}
    assert all(ev["event"] == "tollgate.budget_threshold" for ev in hook.events)
    # more traffic does not raise the same alerts again
    cli.chat("openai/gpt-5.4", key=key["key"])
    time.sleep(1.5)
    assert len(c.api("GET", "/v1/alerts", expect=200)[1]["alerts"]) == 2


def test_an_unpriced_model_cannot_spend_past_a_dollar_budget(fresh):
    """A wildcard route reaches models the prices do not name; served at a
    recorded cost of 0 (unpriced_models: allow), such a request reserved
    nothing and a budget in dollars never saw it. Where one applies it is
    now refused; a token budget still serves it (tokens are counted)."""
    c = fresh.control
    key = new_key(c, "unpriced")
    c.api("PUT", "/v1/budgets/team/unpriced", {"limit_micros": 10**9, "period": "monthly"}, expect=200)
    cli = Client(fresh)
    wait_until(lambda: key_works(fresh.url, key["key"]), what="the key with its budget")
    served = mock_stats(fresh)["requests"]
    r = cli.chat("openai/gpt-5.4-nano", key=key["key"])
    assert r.status_code == 400, r.text
    e = error_of(r)
    assert (e["code"], e["param"]) == ("model_not_priced", "model") and "team:unpriced" in e["message"], e
    assert mock_stats(fresh)["requests"] == served, "nothing reached the provider"
    rec = cli.record(r.headers["x-tollgate-request-id"])
    assert (rec["outcome"], rec["error_code"], rec["budget_decision"]) == ("rejected", "model_not_priced", "denied"), rec
    c.api("PUT", "/v1/budgets/team/unpriced", {"limit_tokens": 10**6, "period": "monthly"}, expect=200)
    r = wait_until(lambda: (r := cli.chat("openai/gpt-5.4-nano", key=key["key"])).status_code == 200 and r, what="the token budget")
    rec = cli.record(r.headers["x-tollgate-request-id"])
    assert (rec["priced"], rec["cost_micros"], rec["budget_decision"]) == (False, 0, "ok"), rec


def test_a_response_continuing_a_stored_one_reserves_the_context_it_is_billed(fresh):
    """A Responses API request naming `previous_response_id` is billed the
    whole chain as input (the mock bills it as OpenAI's conversation-state
    guide says), though its body holds only the new turn. Before, its
    reservation counted the body: near a limit, one such request could
    pass it by the conversation so far. Now the Envoy remembers each stored
    answer's context, and the continuation reserves it."""
    c = fresh.control
    key = new_key(c, "stateful")
    c.api("PUT", "/v1/budgets/key/" + key["id"], {"limit_tokens": 30_000, "period": "daily"}, expect=200)
    cli = Client(fresh)
    wait_until(lambda: key_works(fresh.url, key["key"]), what="the key with its budget")
    ask = {"model": "openai/gpt-5.4", "max_output_tokens": 16}
    r = cli.post("/v1/responses", {**ask, "input": "word " * 16_000}, key=key["key"], headers={"x-mock-output-tokens": "16"})
    assert r.status_code == 200, r.text
    first = r.json()
    context = first["usage"]["input_tokens"] + first["usage"]["output_tokens"]
    assert context > 20_000, first["usage"]
    # ~10,000 tokens left; the turn's own body is a few tokens, its context ~20,000
    served = mock_stats(fresh)["requests"]
    follow = {**ask, "input": "and then?", "previous_response_id": first["id"]}
    r = cli.post("/v1/responses", follow, key=key["key"])
    assert r.status_code == 429 and error_of(r)["code"] == "budget_exhausted", r.text
    assert mock_stats(fresh)["requests"] == served, "nothing reached the provider"
    # A continuation of something this Envoy never saw stored reserves its body, as before
    # (the provider refuses the unknown id, free).
    r = cli.post("/v1/responses", {**follow, "previous_response_id": "resp_never_seen"}, key=key["key"])
    assert r.status_code == 400 and r.json()["error"]["code"] == "previous_response_not_found", r.text
    # With room for it, the continuation is served and billed its context.
    c.api("PUT", "/v1/budgets/key/" + key["id"], {"limit_tokens": 100_000, "period": "daily"}, expect=200)
    r = wait_until(lambda: (r := cli.post("/v1/responses", follow, key=key["key"])).status_code == 200 and r, what="the raised budget")
    assert r.json()["usage"]["input_tokens"] > context, r.json()["usage"]
    rec = cli.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["input_tokens"] == r.json()["usage"]["input_tokens"] and rec["usage_source"] == "provider"


def test_the_searches_a_request_bounds_are_held_by_its_reservation(fresh):
    """A server-side web search is billed apart from tokens ($10 per 1,000).
    A request that bounds its searches (Anthropic's web search tool
    `max_uses`; the Responses API's `max_tool_calls` beside a hosted search
    tool) reserves them now: before, it reserved only its tokens, so near a
    dollar limit its searches passed the limit. A search tool without a
    bound reserves one search, an estimate (docs/security.md). The mock, as
    the providers, runs no more searches than the bound."""
    c = fresh.control
    key = new_key(c, "searchers")
    c.api("PUT", "/v1/budgets/key/" + key["id"], {"limit_micros": 60_000, "period": "daily"}, expect=200)
    cli = Client(fresh)
    wait_until(lambda: key_works(fresh.url, key["key"]), what="the key with its budget")
    ask = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "Any news?"}]}
    search = lambda **bound: [{"type": "web_search_20250305", "name": "web_search", **bound}]
    served = mock_stats(fresh)["requests"]
    # Ten searches are $0.10, past the $0.06 left, whatever the tokens.
    for path, body in (("/v1/messages", {**ask, "tools": search(max_uses=10)}),
                       ("/v1/responses", {"model": "openai/gpt-5.4", "input": "Any news?", "tools": [{"type": "web_search"}], "max_tool_calls": 10})):
        r = cli.post(path, body, key=key["key"], headers={"x-mock-web-searches": "10"}, auth="x-api-key" if "messages" in path else "bearer")
        assert r.status_code == 429 and error_of(r)["code"] == "budget_exhausted", (path, r.text)
    assert mock_stats(fresh)["requests"] == served, "nothing reached the provider"
    # Two fit: served, billed the two it ran (the mock stops at max_uses, as Anthropic does).
    r = cli.post("/v1/messages", {**ask, "tools": search(max_uses=2)}, key=key["key"], headers={"x-mock-web-searches": "5"}, auth="x-api-key")
    assert r.status_code == 200, r.text
    u = r.json()["usage"]
    assert u["server_tool_use"] == {"web_search_requests": 2}, u
    rec = cli.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["web_search_requests"] == 2 and rec["budget_decision"] in ("ok", "soft"), rec
    assert rec["cost_micros"] == int(r.headers["x-tollgate-cost-micros"]) == expected_cost(
        "anthropic/claude-sonnet-4-6", u["input_tokens"], u["output_tokens"]) + 2 * 10_000
    # An unbounded search tool reserves one search beside its tokens.
    r = cli.post("/v1/messages", {**ask, "tools": search()}, key=key["key"], headers={"x-mock-web-searches": "1"}, auth="x-api-key")
    assert r.status_code == 200, r.text
    # With less than one search's fee left, it is refused (before: reserved
    # its tokens only, and let any number of searches start); without the tool it is served.
    small = new_key(c, "searchers-small")
    c.api("PUT", "/v1/budgets/key/" + small["id"], {"limit_micros": 5_000, "period": "daily"}, expect=200)
    wait_until(lambda: key_works(fresh.url, small["key"]), what="the small key with its budget")
    served = mock_stats(fresh)["requests"]
    for path, body in (("/v1/messages", {**ask, "tools": search()}),
                       ("/v1/responses", {"model": "openai/gpt-5.4", "input": "Any news?", "max_output_tokens": 16, "tools": [{"type": "web_search"}]})):
        r = cli.post(path, body, key=small["key"], auth="x-api-key" if "messages" in path else "bearer")
        assert r.status_code == 429 and error_of(r)["code"] == "budget_exhausted", (path, r.text)
    assert mock_stats(fresh)["requests"] == served, "nothing reached the provider"
    r = cli.post("/v1/messages", ask, key=small["key"], auth="x-api-key")
    assert r.status_code == 200, r.text
    # Gemini's grounding has no bound at all: one query ($0.014 on Gemini 3
    # Flash, one grounded prompt $0.035 on 2.5) is reserved, under either
    # spelling of the tool (before: none, any number of searches started).
    grounded = {"contents": [{"role": "user", "parts": [{"text": "Any news?"}]}], "generationConfig": {"maxOutputTokens": 16}}
    gemini = lambda model, body: requests.post(f"{fresh.url}/v1beta/models/{model}:generateContent", json=body,
                                               headers={"x-goog-api-key": small["key"]}, timeout=10)
    served = mock_stats(fresh)["requests"]
    for model in ("gemini-3-flash-preview", "gemini-2.5-flash"):
        for tool in ({"google_search": {}}, {"googleSearch": {}}):
            r = gemini(model, {**grounded, "tools": [tool]})
            assert r.status_code == 429 and error_of(r)["code"] == "budget_exhausted", (model, tool, r.text)
    assert mock_stats(fresh)["requests"] == served, "nothing reached the provider"
    r = gemini("gemini-3-flash-preview", {**grounded, "tools": [{"functionDeclarations": [{"name": "search", "description": "Search the docs"}]}]})
    assert r.status_code == 200, r.text


def test_a_server_tool_loop_is_held_by_its_reservation(fresh):
    """Each use of an Anthropic server tool may be a model call of its own
    within the request (at most ten), reading the context and writing up to
    `max_tokens` (request/server_tools.rs cites the sources). The
    reservation holds them all: a request whose bounded loop could pass the
    budget is refused before sending, where the same request with the
    tool's bound lowered (two calls) is served. Before, one call was
    reserved."""
    c = fresh.control
    key = new_key(c, "loop-holders")
    c.api("PUT", "/v1/budgets/key/" + key["id"], {"limit_tokens": 3_000, "period": "daily"}, expect=200)
    cli = Client(fresh)
    wait_until(lambda: key_works(fresh.url, key["key"]), what="the key with its budget")
    # About 800 tokens of input a call: four calls pass 3,000, two do not.
    ask = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "news " * 640}]}
    search = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    served = mock_stats(fresh)["requests"]
    r = cli.post("/v1/messages", {**ask, "tools": search}, key=key["key"], headers={"x-mock-web-searches": "3"}, auth="x-api-key")
    assert r.status_code == 429 and error_of(r)["code"] == "budget_exhausted", r.text
    assert mock_stats(fresh)["requests"] == served, "nothing reached the provider"
    # One search: two calls (about 1,600) fit, and both are charged.
    r = cli.post("/v1/messages", {**ask, "tools": [{**search[0], "max_uses": 1}]}, key=key["key"], headers={"x-mock-web-searches": "1"}, auth="x-api-key")
    assert r.status_code == 200, r.text
    rec = cli.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["input_tokens"] == r.json()["usage"]["input_tokens"] > 1_200, rec


def test_raising_the_budget_lets_the_key_through_again(fresh):
    c = fresh.control
    key = new_key(c, "ops")
    c.api("PUT", "/v1/budgets/key/" + key["id"], {"limit_tokens": 100, "period": "daily"}, expect=200)
    wait_until(lambda: Client(fresh).chat("cheap", key=key["key"], extra={"max_tokens": 5}).status_code != 401,
               what="the key to be known")
    cli = Client(fresh)
    statuses = []
    for _ in range(30):
        statuses.append(cli.chat("cheap", key=key["key"], extra={"max_tokens": 5}).status_code)
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429 and statuses[0] == 200
    c.api("PUT", "/v1/budgets/key/" + key["id"], {"limit_tokens": 100000, "period": "daily"}, expect=200)
    wait_until(lambda: cli.chat("cheap", key=key["key"]).status_code == 200, what="the raised budget to apply")


def test_revoked_key_is_refused_everywhere_quickly(tmp_path):
    s = sm.Stack(tmp_path, envoys=2)
    try:
        key = new_key(s.control, "sec")
        for e in s.envoys:
            wait_until(lambda e=e: key_works(e.url, key["key"]), what="key on every Envoy")
        s.control.api("POST", f"/v1/keys/{key['id']}/revoke", expect=200)
        t0 = time.monotonic()
        for e in s.envoys:
            wait_until(lambda e=e: not key_works(e.url, key["key"]), timeout=5, what="revocation")
        assert time.monotonic() - t0 < 3.0  # documented: within 2 x poll_ms (+ one request)
        r = requests.post(s.envoys[1].url + "/v1/chat/completions", json={"model": "cheap", "messages": []},
                          headers={"authorization": f"Bearer {key['key']}"}, timeout=5)
        assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"
    finally:
        s.stop()


def status_of(url: str, key: str) -> int:
    return requests.post(url + "/v1/chat/completions", json={"model": "cheap", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
                         headers={"authorization": f"Bearer {key}"}, timeout=10).status_code


def test_budget_states_in_pages_and_deltas_are_enforced_on_every_envoy(tmp_path):
    """The control service sends two budgets a page (TOLLGATE_STATE_PAGE=2):
    a budget on the last page of a full state or of a delta is enforced; a
    change, a new budget and a deletion arrive as deltas."""
    s = sm.Stack(tmp_path, control_env={"TOLLGATE_STATE_PAGE": "2"})
    try:
        c = s.control
        keys = [new_key(c, f"pg{i}")["key"] for i in range(5)]
        for i in range(5):
            # pg4 sorts last: on the third page. One micro-dollar stops any request.
            c.api("PUT", f"/v1/budgets/team/pg{i}", {"limit_micros": 1 if i == 4 else 10**9, "period": "monthly"}, expect=200)
        # A delta of five budgets, in three pages.
        wait_until(lambda: status_of(s.url, keys[4]) == 429, what="the last page's budget on the first Envoy")
        assert [status_of(s.url, k) for k in keys[:4]] == [200] * 4
        # A second Envoy: its first state is full, in three pages (and the
        # first Envoy's next one too: the number of Envoys changed).
        late = s.add_envoy("late")
        late.wait_keys_loaded()
        for url in (s.url, late.url):
            wait_until(lambda url=url: status_of(url, keys[4]) == 429, what="the last page's budget")
            # (The late Envoy's first shares come from the sixteenth kept free; its part once the first has given back.)
            wait_until(lambda url=url: [status_of(url, k) for k in keys[:4]] == [200] * 4, what="the other budgets' shares")
        # Deltas: a raised limit, a new tight one, then that one deleted.
        c.api("PUT", "/v1/budgets/team/pg4", {"limit_micros": 10**9, "period": "monthly"}, expect=200)
        c.api("PUT", "/v1/budgets/team/pg1", {"limit_micros": 1, "period": "monthly"}, expect=200)
        for url in (s.url, late.url):
            wait_until(lambda url=url: status_of(url, keys[4]) == 200 and status_of(url, keys[1]) == 429, what="the changed budgets")
        c.api("DELETE", "/v1/budgets/team/pg1", expect=204)
        for url in (s.url, late.url):
            wait_until(lambda url=url: status_of(url, keys[1]) == 200, what="the deleted budget to stop applying")
        for log in (s.envoy.log_path, late.log_path):
            text = log.read_text()
            assert not any(m in text for m in ("without a full state", "cannot store a budget", "cannot post a budget")), text[-2000:]
    finally:
        s.stop()


def test_a_new_envoy_serves_budgeted_requests_from_its_first_state(tmp_path):
    """An Envoy joining a fleet (a pod scaled up, or rolled out) serves a
    budget far from its limit at once. Before, the Envoys already there held
    the whole budget between them, so the newcomer's first share was 0 and
    it refused every budgeted request as exhausted ("budget_exhausted",
    x-should-retry: false) until they had polled and given back; two
    newcomers starting together each get a part too."""
    s = sm.Stack(tmp_path)
    try:
        c = s.control
        key = new_key(c, "joiners")["key"]
        c.api("PUT", "/v1/budgets/team/joiners", {"limit_micros": 10**9, "period": "monthly"}, expect=200)
        wait_until(lambda: key_works(s.url, key), what="the key on the first Envoy")
        # The first Envoy holds its grant (a few polls).
        time.sleep(2.5)
        late = [s.add_envoy(name, concurrency=1) for name in ("late1", "late2")]
        statuses = {e.log_path.stem: [] for e in late}
        for e in late:
            e.wait_keys_loaded()
        # From the first budget state on, every request is served.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            for e in late:
                statuses[e.log_path.stem].append(status_of(e.url, key))
            time.sleep(0.05)
        for name, got in statuses.items():
            assert set(got) == {200}, f"{name}: {got.count(429)} of {len(got)} refused while joining: {got}"
        budget = c.api("GET", "/v1/budgets/team/joiners", expect=200)[1]
        assert budget["used_micros"] <= budget["limit_micros"]
    finally:
        s.stop()


def test_two_envoys_64_clients_one_key_overshoot_bounded_and_totals_exact(tmp_path):
    s = sm.Stack(tmp_path, envoys=2)
    try:
        c = s.control
        key = new_key(c, "load", key_id="load-key")
        limit = 60_000
        c.api("PUT", "/v1/budgets/key/load-key", {"limit_micros": limit, "period": "monthly"}, expect=200)
        for e in s.envoys:
            wait_until(lambda e=e: key_works(e.url, key["key"]), what="key on every Envoy")
        body = {"model": "openai/gpt-5.4", "max_tokens": 20, "messages": [{"role": "user", "content": "load test"}]}
        ok = []
        lock = threading.Lock()

        def client(i):
            url = s.envoys[i % 2].url
            sess = requests.Session()
            for _ in range(400):
                r = sess.post(url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key['key']}"},
                              timeout=30)
                if r.status_code == 429:
                    return
                assert r.status_code == 200, r.text
                with lock:
                    ok.append(int(r.headers["x-tollgate-cost-micros"]))

        with ThreadPoolExecutor(64) as ex:
            list(ex.map(client, range(64)))
        served = sum(ok)
        print(f"served {served} of limit {limit} in {len(ok)} requests")
        # Worst case of one request: ~4 input tokens estimated high + 20 output at $15/M.
        worst = 400
        workers = 2 * 2
        assert served <= limit + workers * worst, (served, limit)
        assert served > limit * 0.5, "the budget was barely used: shares too conservative"
        stats = mock_stats(s)
        total = wait_until(lambda: (t := spend(s))["requests"] >= stats["requests"] + 0 and t, timeout=15,
                           what="all records ingested")
        time.sleep(1.0)
        total = spend(s)
        # Every provider-served request counted exactly once, in one place.
        assert total["input_tokens"] == stats["input_tokens"]
        assert total["output_tokens"] == stats["output_tokens"]
        assert total["cost_micros"] - 0 >= served  # includes the key probes (cheap model)
    finally:
        s.stop()


def test_a_rarely_used_budgets_settlement_is_written_by_the_background_service_exactly_once(tmp_path):
    """A worker keeps counters for 64 budgets; past that, what it owes a
    counter with nothing in flight goes to the background service in its
    outbox (docs/budgets.md). 100 keys with a budget each, one request
    apiece on one worker (all at once, so that more than 64 counters
    gather between two of the worker's 500 ms ticks; a round again if
    none was handed over), then idle: every key's next request must find
    its counter as every other key's (nothing left reserved, its cost
    counted once), which a settlement lost or written twice would break."""
    s = sm.Stack(tmp_path, concurrency=1)
    try:
        c = s.control
        keys = [new_key(c, "wide", key_id=f"wide-{i:03d}") for i in range(100)]
        probe = new_key(c, "wide", key_id="wide-probe")
        for k in keys + [probe]:
            c.api("PUT", "/v1/budgets/key/" + k["id"], {"limit_micros": 50_000_000, "period": "monthly"}, expect=200)
        body = {"model": "openai/gpt-5.4", "max_tokens": 20, "messages": [{"role": "user", "content": "one each"}]}
        local = threading.local()

        def chat(key: str) -> requests.Response:
            local.session = getattr(local, "session", None) or requests.Session()
            return local.session.post(s.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=10)

        def handed_over() -> int:
            return max(0, envoy_gauge(s, "budget_settlements_handed_over"))

        # Created last: once its budget applies, every earlier key's does.
        wait_until(lambda: "x-tollgate-budget-remaining-micros" in chat(probe["key"]).headers, what="the budgets on the Envoy")
        costs, rounds = [], 0
        while rounds < 5 and handed_over() == 0:
            with ThreadPoolExecutor(32) as ex:
                answers = list(ex.map(lambda k: chat(k["key"]), keys))
            for r in answers:
                assert r.status_code == 200 and "x-tollgate-budget-remaining-micros" in r.headers, (r.status_code, r.text[:300])
                costs.append(int(r.headers["x-tollgate-cost-micros"]))
            rounds += 1
            time.sleep(1.5)  # the worker's tick hands its outbox over; the service's writes it
        assert len(set(costs)) == 1, costs
        assert handed_over() >= 30, (rounds, handed_over())
        wait_until(lambda: spend(s, ("key", keys[-1]["id"]))["cost_micros"] == rounds * costs[-1], what="the usage in the control service")
        time.sleep(3.0)  # polls: the use reflected; the worker's tick: its table written back
        remaining = [int(chat(k["key"]).headers["x-tollgate-budget-remaining-micros"]) for k in keys]
        assert len(set(remaining)) == 1, sorted(set(remaining))
        assert 0 < remaining[0] < 50_000_000 - rounds * costs[0]
    finally:
        s.stop()


def test_control_service_killed_and_restarted_mid_load_loses_and_doubles_nothing(tmp_path):
    s = sm.Stack(tmp_path, envoys=1)
    try:
        c = s.control
        key = new_key(c, "chaos", key_id="chaos-key")
        wait_until(lambda: key_works(s.url, key["key"]), what="key")
        stop = threading.Event()
        served = []

        def client(i):
            sess = requests.Session()
            while not stop.is_set():
                r = sess.post(s.url + "/v1/chat/completions",
                              json={"model": "cheap", "messages": [{"role": "user", "content": f"msg {i}"}]},
                              headers={"authorization": f"Bearer {key['key']}"}, timeout=30)
                assert r.status_code == 200, r.text
                served.append(r.headers["x-tollgate-request-id"])

        with ThreadPoolExecutor(8) as ex:
            futs = [ex.submit(client, i) for i in range(8)]
            time.sleep(1.0)
            c.kill()            # SIGKILL: no graceful shutdown, possibly mid-transaction
            time.sleep(2.0)     # requests keep being served; records pile up in Envoy
            c.start()           # same port, same SQLite file
            time.sleep(1.5)
            stop.set()
            for f in futs:
                f.result()
        stats = mock_stats(s)
        wait_until(lambda: spend(s)["requests"] == stats["requests"], timeout=20, what="every record ingested")
        time.sleep(1.0)
        total = spend(s)
        assert total["requests"] == stats["requests"] == len(served) + 1  # + the key probe
        assert total["input_tokens"] == stats["input_tokens"]
        assert total["output_tokens"] == stats["output_tokens"]
    finally:
        s.stop()


def envoy_gauge(stack: sm.Stack, name: str) -> int:
    """One of the filter's gauges or counters (`tollgate.<name>`, -1 before it is first set), from Envoy's admin stats."""
    text = requests.get(f"http://127.0.0.1:{stack.envoy.admin_port}/stats?filter=tollgate", timeout=5).text
    m = re.search(rf"^(?:wasmcustom\.)?tollgate\.{name}: (\d+)$", text, re.M)
    return int(m.group(1)) if m else -1


def exhaust(stack: sm.Stack, key: str) -> None:
    """Until the budget refuses, and still refuses once the spend before the
    refusal is counted in a newer state: near the limit a refused request
    can fit again then (the sixteenth of what is left kept free for Envoys
    joining shrinks with what is left, docs/budgets.md)."""
    cli = Client(stack)
    for _ in range(50):
        if cli.chat("openai/gpt-5.4", key=key, extra={"max_tokens": 20}).status_code == 429:
            time.sleep(2.5)  # the spend shipped and counted, and a state after it applied
            if cli.chat("openai/gpt-5.4", key=key, extra={"max_tokens": 20}).status_code == 429:
                return
    raise AssertionError("budget never exhausted")


@pytest.mark.parametrize("mode", ["local", "open", "closed"])
def test_failure_modes_when_control_service_is_down(tmp_path, mode):
    def patch(pc):
        pc["control"].update(failure_mode=mode, poll_ms=200, stale_after_ms=1500)
    s = sm.Stack(tmp_path, plugin_patch=patch)
    try:
        c = s.control
        capped = new_key(c, "capped")
        free = new_key(c, "free")
        c.api("PUT", "/v1/budgets/team/capped", {"limit_micros": 1500, "period": "monthly"}, expect=200)
        wait_until(lambda: key_works(s.url, capped["key"]) and key_works(s.url, free["key"]), what="keys")
        time.sleep(0.5)
        exhaust(s, capped["key"])
        c.kill()
        time.sleep(2.5)  # past stale_after_ms
        cli = Client(s)
        r_capped = cli.chat("openai/gpt-5.4", key=capped["key"], extra={"max_tokens": 20})
        r_free = cli.chat("cheap", key=free["key"])
        if mode == "local":
            # Keeps enforcing from the last state and local counters.
            assert r_capped.status_code == 429 and error_of(r_capped)["code"] == "budget_exhausted"
            assert r_free.status_code == 200
        elif mode == "open":
            assert r_capped.status_code == 200 and r_free.status_code == 200
            rec = cli.record(r_capped.headers["x-tollgate-request-id"])
            assert rec["budget_decision"] == "unenforced"
        else:
            assert r_capped.status_code == 503 and error_of(r_capped)["code"] == "budget_state_unavailable"
            assert r_free.status_code == 503
        # The Envoy says it serves from its last state, and holds the
        # records made meanwhile (docs/metrics.md).
        served = 3
        for _ in range(served):
            cli.chat("cheap", key=free["key"])
        wait_until(lambda: envoy_gauge(s, "control_stale") == 1 and envoy_gauge(s, "usage_buffered") >= served,
                   timeout=5, what="the stale and usage-buffered gauges while the control service is down")
        # Back up: normal service resumes, and the records made meanwhile arrive.
        c.start()
        wait_until(lambda: cli.chat("cheap", key=free["key"]).status_code == 200, timeout=10, what="recovery")
        stats = mock_stats(s)
        wait_until(lambda: spend(s)["requests"] >= stats["requests"], timeout=10, what="records after recovery")
        wait_until(lambda: envoy_gauge(s, "usage_buffered") == 0 and envoy_gauge(s, "control_stale") == 0,
                   timeout=10, what="both gauges back to 0")
    finally:
        s.stop()


def test_increase_request_from_the_key_approved_by_an_admin(fresh):
    import os
    import subprocess
    c = fresh.control
    key = new_key(c, "sales", key_id="sales-bot")
    c.api("PUT", "/v1/budgets/team/sales", {"limit_micros": 1500, "period": "monthly"}, expect=200)
    wait_until(lambda: Client(fresh).chat("cheap", key=key["key"], extra={"max_tokens": 5}).status_code != 401, what="key")
    exhaust(fresh, key["key"])
    # The team member asks with their own key, as the 429 message says.
    status, body = c.api("POST", "/v1/budget-requests", {"scope_type": "team", "scope_id": "sales", "limit_micros": 50_000,
                                                         "justification": "quarter-end demo traffic"}, token=key["key"])
    assert status == 201 and body["status"] == "pending" and body["requested_by"] == "key:sales-bot"
    # ...but not for someone else's team.
    status, body = c.api("POST", "/v1/budget-requests", {"scope_type": "team", "scope_id": "growth", "limit_micros": 1,
                                                         "justification": "not my team at all"}, token=key["key"])
    assert status == 403 and body["error"]["code"] == "not_your_scope"
    env = {**os.environ, "TOLLGATE_URL": c.url, "TOLLGATE_ADMIN_TOKEN": sm.ADMIN_TOKEN}
    listing = subprocess.run([str(sm.TOLLGATE_BIN), "requests", "list", "--status", "pending"], capture_output=True,
                             text=True, env=env, check=True).stdout
    assert "team:sales" in listing and "quarter-end demo traffic" in listing
    rid = str(json.loads(subprocess.run([str(sm.TOLLGATE_BIN), "requests", "list", "--json"], capture_output=True,
                                        text=True, env=env, check=True).stdout)["requests"][0]["id"])
    decided = json.loads(subprocess.run([str(sm.TOLLGATE_BIN), "requests", "approve", rid, "--by", "cfo", "--note", "ok",
                                         "--json"], capture_output=True, text=True, env=env, check=True).stdout)
    assert (decided["status"], decided["decided_by"]) == ("approved", "cfo") and decided["decided_ms"] > 0
    # the new limit takes effect in the filter like any budget change
    wait_until(lambda: Client(fresh).chat("openai/gpt-5.4", key=key["key"], extra={"max_tokens": 20}).status_code == 200,
               what="the approved increase to apply")
    assert c.api("GET", "/v1/budgets/team/sales", expect=200)[1]["limit_micros"] == 50_000
    # deciding twice is refused
    status, _ = c.api("POST", f"/v1/budget-requests/{rid}/refuse", {})
    assert status == 409


def test_sdks_get_a_rate_limit_error_at_once_without_retrying(fresh):
    import anthropic
    import openai
    c = fresh.control
    key = new_key(c, "sdk")
    c.api("PUT", "/v1/budgets/team/sdk", {"limit_micros": 1000, "period": "monthly"}, expect=200)
    wait_until(lambda: Client(fresh).chat("cheap", key=key["key"], extra={"max_tokens": 5}).status_code != 401, what="key")
    exhaust(fresh, key["key"])
    oai = openai.OpenAI(base_url=fresh.url + "/v1", api_key=key["key"], max_retries=3)
    t0 = time.monotonic()
    with pytest.raises(openai.RateLimitError) as e:
        oai.chat.completions.create(model="openai/gpt-5.4", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert time.monotonic() - t0 < 1.0, "the SDK must not back off and retry a budget stop"
    assert e.value.code == "budget_exhausted" and e.value.body["scope"] == "team:sdk"
    claude = anthropic.Anthropic(base_url=fresh.url, api_key=key["key"], max_retries=3)
    t0 = time.monotonic()
    with pytest.raises(anthropic.RateLimitError) as e2:
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert time.monotonic() - t0 < 1.0
    assert e2.value.body["error"]["type"] == "budget_exhausted"


def test_an_advisors_calls_count_against_the_budget_and_are_reported_under_its_model(fresh):
    """Anthropic's advisor tool runs Opus inside a Sonnet request. Its calls are
    reserved (one call of the gateway's default cap: Claude Code names no
    bounds), recorded as the advisor model's own record, counted against
    the team's budget and reported under the advisor's model."""
    c = fresh.control
    key = new_key(c, "advisees", key_id="advisee-app")
    c.api("PUT", "/v1/budgets/team/advisees", {"limit_micros": 300_000, "period": "monthly"}, expect=200)
    wait_until(lambda: key_works(fresh.url, key["key"]), what="the new key to work in Envoy")
    cli = Client(fresh)
    tools = {"tools": [{"type": "advisor_20260301", "name": "advisor", "model": "claude-opus-4-8"}]}
    headers = {"anthropic-beta": "advisor-tool-2026-03-01", "x-mock-advisor-tokens": "20000,900"}
    # Each request: the executor's few tokens plus the advisor's 20,000 in / 900 out at $5 / $25 ($0.1225).
    costs, denied = [], None
    for _ in range(10):
        r = cli.messages("anthropic/claude-sonnet-4-6", key=key["key"], headers=headers, extra=tools)
        if r.status_code == 429:
            denied = r
            break
        assert r.status_code == 200, r.text
        costs.append(int(r.headers["x-tollgate-cost-micros"]))
        time.sleep(0.2)
    assert costs and all(cost > 122_500 for cost in costs), costs
    assert denied is not None and error_of(denied)["scope"] == "team:advisees", "the advisor's spend never reached the budget"
    # Three at most: each reserves its advisor's call at the default cap, the spend
    # arrives with the records (the mock's advisor reads more than the estimate: the
    # overshoot docs/security.md bounds).
    assert len(costs) <= 3, costs
    # The control service counted both records of every request; the report splits them by model.
    total = wait_until(lambda: (s := spend(fresh, ("team", "advisees")))["cost_micros"] >= sum(costs) and s,
                       what="the advisor records to reach the control service")
    rows = c.api("GET", "/v1/reports/spend?group_by=model&team=advisees", expect=200)[1]["rows"]
    by_model = {row["model"]: row for row in rows}
    assert by_model["claude-opus-4-8"]["cost_micros"] == 122_500 * len(costs), by_model
    assert by_model["claude-opus-4-8"]["requests"] == len(costs)
    assert sum(row["cost_micros"] for row in rows) == total["cost_micros"]


def key_with_budget(fresh, team: str, limit_micros: int) -> tuple[dict, Client]:
    """A new key of `team` with a daily budget of its own, once Envoy has it."""
    key = new_key(fresh.control, team)
    fresh.control.api("PUT", "/v1/budgets/key/" + key["id"], {"limit_micros": limit_micros, "period": "daily"}, expect=200)
    wait_until(lambda: key_works(fresh.url, key["key"]), what="the key with its budget")
    return key, Client(fresh)


def test_an_image_generation_is_held_by_the_images_it_asks_for(fresh):
    """An image's tokens cannot be capped: a generation reserves the images
    it asks for (`n` × the tokens of their quality and size, at the image
    output price). GPT Image 1.5 at high quality, 1536×1024: 6,240 tokens,
    $0.20 an image; a key with $0.10 left is refused it before anything is
    sent, as are ten low-quality portraits ($0.13) and a stream of six
    squares with three partial images each ($0.11); a low-quality square
    ($0.009) is served."""
    key, cli = key_with_budget(fresh, "artists", 100_000)
    served = mock_stats(fresh)["requests"]
    ask = {"model": "gpt-image-1.5", "prompt": "A sea otter reading a ledger"}
    for body in ({**ask, "quality": "high", "size": "1536x1024"}, ask, {**ask, "quality": "low", "size": "1024x1536", "n": 10},
                 {**ask, "quality": "low", "size": "1024x1024", "n": 6, "stream": True, "partial_images": 3}):
        r = cli.post("/v1/images/generations", body, key=key["key"])
        assert r.status_code == 429 and error_of(r)["code"] == "budget_exhausted", (body, r.text)
    assert mock_stats(fresh)["requests"] == served, "nothing reached the provider"
    r = cli.post("/v1/images/generations", {**ask, "quality": "low", "size": "1024x1024"}, key=key["key"])
    assert r.status_code == 200, r.text
    u = r.json()["usage"]
    rec = cli.record(r.headers["x-tollgate-request-id"])
    assert rec["cost_micros"] == expected_cost("openai/gpt-image-1.5", u["input_tokens"], 272, image=272) > 8_000, rec


def test_an_image_edit_is_held_by_its_images_not_their_bytes(fresh):
    """An edit reserves its input images at the image input price (GPT
    Image 1.5, $8 a million: 581 tokens an image at low fidelity, 6,821 at
    high) and its output as a generation; each of `n` images as a call of
    its own, its input with it. A key with $0.05 left is refused sixteen
    images at high fidelity ($0.88) and four low-quality images of two
    inputs ($0.07), before anything is sent, and served one image whose
    3 MB data URL is an image, not 800,000 tokens of prompt text ($4)."""
    key, cli = key_with_budget(fresh, "retouchers", 50_000)
    served = mock_stats(fresh)["requests"]
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")
    ref = {"file_id": "file-otter"}
    ask = {"model": "gpt-image-1.5", "prompt": "Put a hat on the otter", "quality": "low", "size": "1024x1024"}
    for body in ({**ask, "images": [ref] * 16, "input_fidelity": "high"}, {**ask, "images": [ref] * 2, "n": 4}):
        r = cli.post("/v1/images/edits", body, key=key["key"])
        assert r.status_code == 429 and error_of(r)["code"] == "budget_exhausted", (body, r.text)
    assert mock_stats(fresh)["requests"] == served, "nothing reached the provider"
    big = "data:image/png;base64," + base64.b64encode(png + b"\0" * (3 << 20)).decode()
    r = cli.post("/v1/images/edits", {**ask, "images": [{"image_url": big}]}, key=key["key"])
    assert r.status_code == 200, r.text[:300]
    u = r.json()["usage"]
    rec = cli.record(r.headers["x-tollgate-request-id"])
    assert rec["cost_micros"] == expected_cost("openai/gpt-image-1.5", u["input_tokens"], 272, image=272, image_input=194) > 10_000, rec


def test_a_transcription_is_held_by_its_audios_length(fresh):
    """A transcription reserves its audio as its model bills it, the length
    read from the file's header: whisper-1 by the second ($0.006 a minute),
    gpt-4o-transcribe by 1,000 audio tokens a minute and its output bound
    (2,000 tokens and 10 a second: $0.02 for any recording). A key with
    $0.01 left is refused 200 seconds of whisper-1 ($0.02) and any
    gpt-4o-transcribe request before anything is sent, and served 9
    seconds of whisper-1 ($0.0009)."""
    from test_audio import multipart, wav
    key, cli = key_with_budget(fresh, "listeners", 10_000)
    served = mock_stats(fresh)["requests"]
    def transcribe(model: str, seconds: float):
        body, ctype = multipart([("model", model)], [("file", "speech.wav", wav(seconds, rate=8_000))])
        return cli.post("/v1/audio/transcriptions", raw=body, key=key["key"], headers={"content-type": ctype})
    for model, seconds in (("whisper-1", 200), ("gpt-4o-transcribe", 9)):
        r = transcribe(model, seconds)
        assert r.status_code == 429 and error_of(r)["code"] == "budget_exhausted", (model, r.text)
    assert mock_stats(fresh)["requests"] == served, "nothing reached the provider"
    r = transcribe("whisper-1", 8.47)
    assert r.status_code == 200, r.text
    assert cli.record(r.headers["x-tollgate-request-id"])["cost_micros"] == 900


def test_speech_is_held_by_its_characters_or_the_audio_its_text_can_make(fresh):
    """tts-1 reserves its input's characters ($15 a million); gpt-4o-mini-tts
    its text and the audio the text can make read at its slowest (8
    characters a second, 1,250 audio tokens a minute at $12 a million). A
    key with $0.01 left is refused 4,096 characters of tts-1 ($0.061) and
    1,000 of gpt-4o-mini-tts ($0.031) before anything is sent, and served
    the 45 characters of the API reference's fox ($0.000675)."""
    key, cli = key_with_budget(fresh, "narrators", 10_000)
    served = mock_stats(fresh)["requests"]
    for model, text in (("tts-1", "x" * 4096), ("gpt-4o-mini-tts", "y" * 1000)):
        r = cli.post("/v1/audio/speech", {"model": model, "input": text, "voice": "alloy"}, key=key["key"])
        assert r.status_code == 429 and error_of(r)["code"] == "budget_exhausted", (model, r.text)
    assert mock_stats(fresh)["requests"] == served, "nothing reached the provider"
    r = cli.post("/v1/audio/speech", {"model": "tts-1", "input": "The quick brown fox jumped over the lazy dog.", "voice": "alloy"}, key=key["key"])
    assert r.status_code == 200 and r.content[:2] == b"\xff\xf3", r.text[:200]
    assert cli.record(r.headers["x-tollgate-request-id"])["cost_micros"] == 675


def test_a_decision_is_held_by_its_input_alone(fresh):
    """OpenAI's Decisions API bills only its input, every token at $0.10 a
    million (envoy/demo/envoy.yaml's gpt-6-luna), and reserves no output: a
    key with 5,000 tokens a day is refused a 400 KB ticket (about 100,000
    tokens) before anything is sent, and served a short one, charged its
    input alone (11 tokens: 1.1 micro-dollars, rounded up)."""
    key = new_key(fresh.control, "classifiers")
    fresh.control.api("PUT", "/v1/budgets/key/" + key["id"], {"limit_tokens": 5_000, "period": "daily"}, expect=200)
    wait_until(lambda: key_works(fresh.url, key["key"]), what="the key with its budget")
    cli = Client(fresh)
    served = mock_stats(fresh)["requests"]
    ask = {"model": "gpt-6-luna", "questions": [{"type": "predicate", "instructions": "Is it a refund request?"}]}
    r = cli.post("/v1/decisions", {**ask, "input": "refund " * 58_000}, key=key["key"])
    assert r.status_code == 429 and error_of(r)["code"] == "budget_exhausted", r.text
    assert mock_stats(fresh)["requests"] == served, "nothing reached the provider"
    r = cli.post("/v1/decisions", {**ask, "input": "I want my money back."}, key=key["key"])
    assert r.status_code == 200, r.text
    rec = cli.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"]) == (11, 1), rec
    assert rec["cost_micros"] == 2, "11 input tokens at $0.10 a million; the answer's token free"


def test_the_responses_image_generation_tool_is_held_by_its_reservation(fresh):
    """The image generation tool's image is reserved (one a call: the
    tool's default model, GPT Image 2.6 Sunburst at $30 a million, high
    quality and 1536×1024 when it asks nothing: $0.19): a key with $0.10 left is
    refused it before anything is sent, and served a low-quality square."""
    key, cli = key_with_budget(fresh, "illustrators", 100_000)
    served = mock_stats(fresh)["requests"]
    ask = {"model": "openai/gpt-5.4", "input": "Draw an otter", "max_output_tokens": 50}
    for tools, extra in (([{"type": "image_generation"}], {}),
                         # (thirteen low-quality squares: 13 × 272 tokens at $30 a million, $0.106)
                         ([{"type": "image_generation", "quality": "low", "size": "1024x1024"}], {"max_tool_calls": 13})):
        r = cli.post("/v1/responses", {**ask, "tools": tools, **extra}, key=key["key"])
        assert r.status_code == 429 and error_of(r)["code"] == "budget_exhausted", (tools, r.text)
    assert mock_stats(fresh)["requests"] == served, "nothing reached the provider"
    r = cli.post("/v1/responses", {**ask, "tools": [{"type": "image_generation", "quality": "low", "size": "1024x1024"}]}, key=key["key"])
    assert r.status_code == 200, r.text
    rec = cli.record(r.headers["x-tollgate-request-id"] + "-image_generation")
    assert rec["cost_micros"] == expected_cost("openai/gpt-image-2.6-sunburst", 20, 272, image=272) and rec["key_id"] == key["id"], rec
