"""OpenAI's Batch API through Envoy (`files.create(purpose="batch")`,
`batches.create` / `retrieve` / `cancel` with the stock SDK).

Before, `/v1/batches` was an other path (404, or with `other_paths: pass`
the virtual key went to OpenAI and was refused): a client behind the
gateway could not run a batch, and a gateway that let one through would not
have seen its spend. Now a batch is created with who asked for it written
into its metadata (which the API lets no one change), and charged when a
read of it shows it ended: its `model` and `usage` (the `Batch` object of
openai/openai-openapi) at the model's prices times `batch_percent`, to the
key, team and project its metadata names, once (the record id is the
batch's). The mock runs a batch's lines through its own endpoints
(tests/mock-provider/src/objects/batches.rs cites the sources)."""
from __future__ import annotations

import gzip
import json
import time

import openai
import pytest
import requests

import stack as sm
from conftest import SEARCH_KEY, error_of, expected_cost, mock_stats, new_openai_key, wait_until

LINES = [
    {"custom_id": f"row-{i}", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-5.4-2026-03-05", "max_completion_tokens": 40, "messages": [{"role": "user", "content": f"Classify ticket {i}: the app crashes on login."}]}}
    for i in range(3)
]


def jsonl(lines) -> bytes:
    return "".join(json.dumps(l) + "\n" for l in lines).encode()


def no_guardrails(pc):
    # (The demo's policy blocks secrets, which an uploaded file could carry unscanned: uploads are refused under it.)
    del pc["guardrails"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = sm.Stack(tmp_path_factory.mktemp("batches"), plugin_patch=no_guardrails)
    yield s
    s.stop()


def test_a_batch_runs_through_the_gateway_and_is_charged_once_to_whoever_created_it(stack):
    owner_key = new_openai_key(stack, "nightly", "batch-jobs")[0]
    owner = openai.OpenAI(base_url=stack.url + "/v1", api_key=owner_key, max_retries=0)
    # Another team's key polls it: the batch is still the creator's to pay.
    other = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    before = mock_stats(stack)
    f = owner.files.create(file=("tickets.jsonl", jsonl(LINES), "application/jsonl"), purpose="batch")
    raw = owner.batches.with_raw_response.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                                 metadata={"job": "ticket-triage"})
    made = raw.parse()
    assert raw.headers["x-mock-auth"] == "Bearer sk-mock-openai", "the provider's key, never the virtual one"
    assert made.status == "validating" and made.metadata["job"] == "ticket-triage"
    assert made.metadata["tollgate_team"] == "nightly" and made.metadata["tollgate_project"] == "batch-jobs"
    done = wait_until(lambda: (b := other.batches.retrieve(made.id)).status == "completed" and b, what="the batch to complete")
    assert (done.request_counts.total, done.request_counts.completed, done.model) == (3, 3, "gpt-5.4-2026-03-05")
    ran = mock_stats(stack)
    assert (ran["input_tokens"] - before["input_tokens"], ran["output_tokens"] - before["output_tokens"]) == (
        done.usage.input_tokens, done.usage.output_tokens), "the batch's usage is what its requests were billed"
    out = [json.loads(l) for l in owner.files.content(done.output_file_id).read().splitlines()]
    assert sorted(o["custom_id"] for o in out) == ["row-0", "row-1", "row-2"]
    assert sum(o["response"]["body"]["usage"]["prompt_tokens"] for o in out) == done.usage.input_tokens

    rid = f"tg-batch-{made.id}"
    recs = wait_until(lambda: [r for r in stack.envoy.usage_records() if r["id"] == rid], what="the batch's record")
    r = recs[0]
    key_id = made.metadata["tollgate_key"]
    assert (r["key_id"], r["team"], r["project"], r["api"], r["service_tier"]) == (key_id, "nightly", "batch-jobs", "openai_chat", "batch")
    assert (r["model_served"], r["usage"]["input_tokens"], r["usage"]["output_tokens"]) == ("gpt-5.4-2026-03-05", done.usage.input_tokens, done.usage.output_tokens)
    # The dated model the batch reports is priced as gpt-5.4, whose batches the demo prices at OpenAI's 50 %.
    cost = expected_cost("openai/gpt-5.4", done.usage.input_tokens, done.usage.output_tokens,
                         cached=done.usage.input_tokens_details.cached_tokens, percent=50)
    assert r["cost_micros"] == cost > 0 and r["priced"] is True
    # Read again and again, by either key, and cancelled too late: one charge.
    for c in (owner, other, owner):
        assert c.batches.retrieve(made.id).status == "completed"
    with pytest.raises(openai.ConflictError):
        owner.batches.cancel(made.id)
    spend = lambda: stack.control.api("GET", f"/v1/spend?scope_type=key&scope_id={key_id}", expect=200)[1]
    got = wait_until(lambda: (s := spend())["cost_micros"] == cost and s, what="the charge in the ledger")
    time.sleep(1.5)
    assert spend()["cost_micros"] == cost and got["requests"] == spend()["requests"], "counted once"
    assert len([x for x in stack.envoy.usage_records() if x["id"] == rid]) == 1, "logged once on this Envoy"


def test_a_batch_is_refused_where_its_owner_or_its_spend_could_not_be_held(stack):
    c = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    f = c.files.create(file=("t.jsonl", jsonl(LINES), "application/jsonl"), purpose="batch")
    before = mock_stats(stack)

    def refused(exc, code, **kw):
        with pytest.raises(exc) as e:
            c.batches.create(input_file_id=f.id, endpoint=kw.pop("endpoint", "/v1/chat/completions"), completion_window="24h", **kw)
        assert e.value.body["code"] == code, e.value.body
    # The client cannot name another owner.
    refused(openai.BadRequestError, "reserved_metadata", metadata={"tollgate_key": "someone-else"})
    refused(openai.BadRequestError, "metadata_full", metadata={f"m{i}": "v" for i in range(14)})
    refused(openai.BadRequestError, "unsupported_batch_endpoint", endpoint="/v1/videos")
    # Listing would show every team's batches, kept under the provider's one key.
    with pytest.raises(openai.PermissionDeniedError) as e:
        c.batches.list()
    assert e.value.body["code"] == "listing_not_allowed"
    # A key limited to some models could run any in a batch's file.
    limited = openai.OpenAI(base_url=stack.url + "/v1", api_key=new_openai_key(stack, "interns2", "batch-jobs", models=["openai/gpt-5.4-mini"])[0], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as e:
        limited.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert e.value.body["code"] == "batch_not_allowed"
    assert mock_stats(stack) == before
    # A key whose budget is spent starts no batch.
    broke_key = new_openai_key(stack, "broke", "batch-jobs")[0]
    broke = openai.OpenAI(base_url=stack.url + "/v1", api_key=broke_key, max_retries=0)
    stack.control.api("PUT", "/v1/budgets/team/broke", {"limit_micros": 1, "period": "monthly"}, expect=200)
    broke.chat.completions.create(model="openai/gpt-5.4", messages=[{"role": "user", "content": "spend it"}])

    def denied():
        try:
            broke.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
            return False
        except openai.RateLimitError as e:
            return e
    e = wait_until(denied, what="the spent budget to refuse the batch")
    assert e.body["code"] == "budget_exhausted" and e.body["scope"] == "team:broke"


def test_a_cancelled_batch_is_charged_what_ran_and_a_foreign_batch_nothing(stack):
    c = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    f = c.files.create(file=("t.jsonl", jsonl(LINES), "application/jsonl"), purpose="batch")
    made = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                            extra_headers={"x-mock-batch-delay-ms": "2000"})
    assert c.batches.cancel(made.id).status == "cancelling"
    ended = wait_until(lambda: (b := c.batches.retrieve(made.id)).status == "cancelled" and b, what="the cancel")
    assert ended.usage.input_tokens == 0
    rec = wait_until(lambda: [r for r in stack.envoy.usage_records() if r["id"] == f"tg-batch-{made.id}"], what="its record")[0]
    assert (rec["error_code"], rec["cost_micros"], rec["team"]) == ("batch_cancelled", 0, "search")
    # A batch made around the gateway (no owner in its metadata) is not the gateway's to charge.
    direct = requests.post(stack.mock.url + "/v1/batches", json={"input_file_id": f.id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
                           headers={"authorization": "Bearer sk-mock-openai"}, timeout=10).json()
    wait_until(lambda: c.batches.retrieve(direct["id"]).status == "completed", what="the foreign batch")
    marker = c.chat.completions.with_raw_response.create(model="cheap", messages=[{"role": "user", "content": "after"}])
    wait_until(lambda: [r for r in stack.envoy.usage_records() if r["id"] == marker.headers["x-tollgate-request-id"]], what="a later record")
    assert not [r for r in stack.envoy.usage_records() if r["id"] == f"tg-batch-{direct['id']}"]


def test_hostile_batch_requests_are_refused_or_sent_as_checked(stack):
    url = stack.url + "/v1/batches"
    auth = {"authorization": f"Bearer {SEARCH_KEY}", "content-type": "application/json"}
    before = mock_stats(stack)
    for body, code in [
        (b'{"endpoint":"/v1/chat/completions","endpoint":"/v1/videos"}', "duplicate_key"),
        (b'{"endpoint":"/v1/chat/completions","metadata":{"a":"1","a":"2"}}', "duplicate_key"),
        (b'{"endpoint":"/v1/chat/completions","metadata":{"job":7}}', "invalid_type"),
        (b'[1,2]', "invalid_json"),
        (b'{"endpoint":"/v1/chat/\xff"}', "invalid_json"),
        (b'', "invalid_json"),
    ]:
        r = requests.post(url, data=body, headers=auth, timeout=10)
        assert (r.status_code, error_of(r)["code"]) == (400, code), (body, r.text)
    assert mock_stats(stack) == before
    # A gzip body is read whole, tagged and sent decoded; a number no parser holds goes as sent, for the provider to refuse.
    z = gzip.compress(b'{"input_file_id":"file-none","endpoint":"/v1/chat/completions","completion_window":"24h"}')
    r = requests.post(url, data=z, headers={**auth, "content-encoding": "gzip"}, timeout=10)
    assert r.status_code == 400 and "file-none" in r.json()["error"]["message"] and r.headers["x-mock-path"] == "/v1/batches", r.text
    r = requests.post(url, data=b'{"endpoint":"/v1/chat/completions","completion_window":"24h","input_file_id":"f","x":1e400}', headers=auth, timeout=10)
    assert r.status_code == 400 and r.headers.get("x-mock-path") == "/v1/batches", r.text
    # A batch is read whole: a client asking for parts of it (which a CDN in
    # front of the API would serve, 206) or for "not modified" gets it all.
    c = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    f = c.files.create(file=("t.jsonl", jsonl(LINES[:1]), "application/jsonl"), purpose="batch")
    made = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert requests.get(stack.mock.url + f"/v1/batches/{made.id}", headers={"authorization": "Bearer sk-mock-openai", "range": "bytes=0-9"}, timeout=10).status_code == 206
    wait_until(lambda: requests.get(stack.mock.url + f"/v1/batches/{made.id}", headers={"authorization": "Bearer sk-mock-openai"}, timeout=10).json()["status"] == "completed", what="the batch")
    for extra in ({"range": "bytes=0-9"}, {"range": "bytes=10-99999"}, {"if-none-match": '"x"', "if-modified-since": "Sun, 06 Dec 2026 00:00:00 GMT"}):
        r = requests.get(url + "/" + made.id, headers={**auth, **extra}, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "completed", (extra, r.status_code, r.text[:100])
    assert wait_until(lambda: [x for x in stack.envoy.usage_records() if x["id"] == f"tg-batch-{made.id}"], what="its charge")
    # A batch object the provider compressed unasked is read decoded (charged
    # once, above); one whose compression breaks is passed on and not read.
    f = c.files.create(file=("t.jsonl", jsonl(LINES[1:2]), "application/jsonl"), purpose="batch")
    zipped = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    wait_until(lambda: requests.get(stack.mock.url + f"/v1/batches/{zipped.id}", headers={"authorization": "Bearer sk-mock-openai"}, timeout=10).json()["status"] == "completed", what="the batch")
    broken = requests.get(url + "/" + zipped.id, headers={**auth, "x-mock-gzip": "corrupt"}, timeout=10, stream=True)
    assert broken.status_code == 200 and broken.headers["content-encoding"] == "gzip"
    broken.raw.read()  # (as the provider sent it: the client's to refuse)
    broken.close()
    time.sleep(0.7)
    assert not [x for x in stack.envoy.usage_records() if x["id"] == f"tg-batch-{zipped.id}"], "nothing read from a broken answer"
    r = requests.get(url + "/" + zipped.id, headers={**auth, "x-mock-gzip": "1"}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text[:100]
    rec = wait_until(lambda: [x for x in stack.envoy.usage_records() if x["id"] == f"tg-batch-{zipped.id}"], what="the gzipped batch's charge")
    assert len(rec) == 1 and rec[0]["usage"]["input_tokens"] > 0, rec
    # Ids that are ids only once decoded.
    for path in ["/v1/batches/batch%2F1", "/v1/batches/b.1", "/v1/batches/" + "b" * 300]:
        r = requests.get(stack.url + path, headers=auth, timeout=10)
        assert r.status_code in (400, 404) and "x-mock-path" not in r.headers, (path, r.status_code)


def test_under_a_blocking_policy_a_batch_file_is_scanned_line_by_line(tmp_path):
    """The demo's policy blocks secrets, cards and SSNs and redacts IBANs:
    an upload it cannot read is refused, but a batch file is JSON Lines of
    requests, each line scanned as a request is. Before, every upload was
    refused under such a policy, so no batch could run behind it."""
    s = sm.Stack(tmp_path)
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
        pay = dict(LINES[0], custom_id="pay", body=dict(LINES[0]["body"], messages=[{"role": "user", "content": "Pay DE89 3704 0044 0532 0130 00 today."}]))
        f = c.files.create(file=("t.jsonl", jsonl([LINES[1], pay]), "application/jsonl"), purpose="batch")
        kept = c.files.content(f.id).read().decode().splitlines()
        assert json.loads(kept[0]) == LINES[1], "a clean line goes as it came"
        assert json.loads(kept[1])["body"]["messages"][0]["content"] == "Pay [IBAN_1] today.", kept[1]
        made = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        wait_until(lambda: c.batches.retrieve(made.id).status == "completed", what="the scanned batch")
        assert wait_until(lambda: [r for r in s.envoy.usage_records() if r["id"] == f"tg-batch-{made.id}"], what="its charge")

        before = mock_stats(s)
        card = dict(LINES[2], body=dict(LINES[2]["body"], messages=[{"role": "user", "content": "Charge 4111 1111 1111 1111."}]))
        r = c.files.with_raw_response
        with pytest.raises(openai.BadRequestError) as e:
            r.create(file=("t.jsonl", jsonl([LINES[0], card]), "application/jsonl"), purpose="batch")
        assert e.value.body["code"] == "content_blocked", e.value.body
        rid = e.value.response.headers["x-tollgate-request-id"]
        rec = wait_until(lambda: [x for x in s.envoy.usage_records() if x["id"] == rid], what="the refusal's record")[0]
        assert (rec["outcome"], rec["guardrails"]["classes"], rec["guardrails"]["action"]) == ("rejected", {"card": 1}, "blocked"), rec
        # Not a batch's JSON Lines: nothing the scan reads.
        for purpose in ("user_data", "assistants"):
            with pytest.raises(openai.PermissionDeniedError) as e:
                c.files.create(file=("t.jsonl", jsonl(LINES), "application/jsonl"), purpose=purpose)
            assert e.value.body["code"] == "content_unscannable"
        # A line the scan cannot read is refused, not sent unchecked beside a card number.
        for bad in (b'{"custom_id":"x","n":1e400,"c":"4111 1111 1111 1111"}\n', b'not json 4111 1111 1111 1111\n', b'{"a":"\xff"}\n'):
            with pytest.raises(openai.BadRequestError) as e:
                c.files.create(file=("t.jsonl", bad, "application/jsonl"), purpose="batch")
            assert e.value.body["code"] in ("content_blocked", "content_unreadable"), (bad, e.value.body)
        assert mock_stats(s) == before
    finally:
        s.stop()


def test_a_form_that_could_be_read_two_ways_is_refused_under_a_policy(tmp_path):
    s = sm.Stack(tmp_path)
    try:
        url = s.url + "/v1/files"
        auth = {"authorization": f"Bearer {SEARCH_KEY}"}
        card = b'{"custom_id":"c","body":{"m":"4111 1111 1111 1111"}}\n'
        # Two files (the scan reads one, the provider maybe the other), two purposes.
        r = requests.post(url, headers=auth, files=[("purpose", (None, "batch")), ("file", ("a.jsonl", b"{}\n")), ("file", ("b.jsonl", card))], timeout=10)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "duplicate_key"), r.text
        r = requests.post(url, headers=auth, files=[("purpose", (None, "batch")), ("purpose", (None, "user_data")), ("file", ("a.jsonl", card))], timeout=10)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "duplicate_key"), r.text
        # Not a form, or no body.
        r = requests.post(url, headers={**auth, "content-type": "application/json"}, data=card, timeout=10)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "content_unscannable"), r.text
        r = requests.post(url, headers=auth, timeout=10)
        assert r.status_code == 403, r.text
        # A gzip form is read decoded, and sent decoded.
        body, ctype = requests.models.RequestEncodingMixin._encode_files([("purpose", (None, "batch")), ("file", ("a.jsonl", card))], {})
        r = requests.post(url, headers={**auth, "content-type": ctype, "content-encoding": "gzip"}, data=gzip.compress(body), timeout=10)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "content_blocked"), r.text
        assert mock_stats(s)["requests"] == 0
    finally:
        s.stop()


def test_where_listing_is_allowed_an_ended_batch_a_list_shows_is_charged(tmp_path):
    """A list of batches hands out each one's output file as a read by id
    does: with `list_stored_objects` (one team's gateway) a client reading
    only the list would otherwise run batches without a charge."""
    def listing(pc):
        no_guardrails(pc)
        pc["list_stored_objects"] = True
    s = sm.Stack(tmp_path, plugin_patch=listing)
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
        f = c.files.create(file=("t.jsonl", jsonl(LINES), "application/jsonl"), purpose="batch")
        made = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        # (Its end seen at the provider only: the gateway is not asked for it by id.)
        wait_until(lambda: requests.get(s.mock.url + f"/v1/batches/{made.id}", headers={"authorization": "Bearer sk-mock-openai"}, timeout=10).json()["status"] == "completed",
                   what="the batch")
        listed = [b for b in c.batches.list() if b.id == made.id]
        assert listed and listed[0].output_file_id and listed[0].status == "completed"
        rec = wait_until(lambda: [r for r in s.envoy.usage_records() if r["id"] == f"tg-batch-{made.id}"], what="its charge")[0]
        assert rec["team"] == "search" and rec["usage"]["input_tokens"] == listed[0].usage.input_tokens > 0, rec
        c.batches.list()
        time.sleep(0.7)
        assert len([r for r in s.envoy.usage_records() if r["id"] == f"tg-batch-{made.id}"]) == 1
    finally:
        s.stop()
