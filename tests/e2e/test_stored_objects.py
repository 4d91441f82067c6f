"""OpenAI's stored objects through Envoy: a stored response read back,
listed, deleted, cancelled (`responses.retrieve`, `input_items.list`,
`delete`, `cancel`) and conversations with their items (`conversations.*`,
the OpenAI Agents SDK's `OpenAIConversationsSession` and `conversation_id`).

They answered 404 (with `other_paths: pass` the client's virtual key went
to OpenAI, which refused it: a client behind the gateway could not use
them at all). Served now to the `stored_objects` provider with its own key,
free (no record, no budget), for keys that may use one of its models;
conversation items pass the request guardrails first. The mock keeps them
as the API does (tests/mock-provider/src/objects/mod.rs cites its sources:
openai/openai-openapi's paths and schemas, OpenAI's conversation-state
guide for the billed context)."""
from __future__ import annotations

import asyncio
import time
import urllib.parse

import openai
import pytest
import requests

import stack as sm
from conftest import LABS_KEY, SEARCH_KEY, error_of

MODEL = "openai/gpt-5.4"
STORY = "Tell me a three sentence bedtime story about a unicorn."


def call(client, method: str, path: str, key: str | None = SEARCH_KEY, **kw) -> requests.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    headers.update(kw.pop("headers", {}))
    return requests.request(method, client.url + path, headers=headers, timeout=30, **kw)


def no_record_for(client, request_id: str) -> bool:
    """The gateway writes no record for `request_id`: a later request's record
    is out first (records leave in order), and none names it."""
    marker = client.chat("default", "after")
    client.record(marker.headers["x-tollgate-request-id"])
    return not [r for r in client.records() if r["id"] == request_id]


def test_the_sdk_reads_back_lists_deletes_and_cannot_cancel_a_stored_response(oai, client):
    made = oai.responses.create(model=MODEL, input=STORY)
    raw = oai.responses.with_raw_response.retrieve(made.id)
    got = raw.parse()
    # The provider's own object, as it kept it (the mock refuses any key but its own).
    assert (got.id, got.output_text, got.usage.input_tokens, got.usage.output_tokens) == (
        made.id, made.output_text, made.usage.input_tokens, made.usage.output_tokens)
    assert raw.headers["x-mock-path"] == f"/v1/responses/{made.id}"
    assert no_record_for(client, raw.headers["x-tollgate-request-id"]), "reading a response back is no usage"
    items = oai.responses.input_items.list(made.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [("message", "user", STORY)]
    # Only a background response can be cancelled: the provider's refusal, passed on.
    with pytest.raises(openai.BadRequestError):
        oai.responses.cancel(made.id)
    # Streamed responses are kept too, and continued by id.
    with oai.responses.stream(model=MODEL, input="Another one.") as s:
        streamed = s.get_final_response()
    assert oai.responses.retrieve(streamed.id).output_text == streamed.output_text
    oai.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(made.id)
    with pytest.raises(openai.BadRequestError):
        oai.responses.create(model=MODEL, input="and then?", previous_response_id=made.id)


def test_a_conversation_is_kept_at_the_provider_and_billed_as_context(oai, client):
    conv = oai.conversations.create(metadata={"topic": "demo"}, items=[{"type": "message", "role": "user", "content": "Hello!"}])
    assert conv.id.startswith("conv_") and conv.metadata == {"topic": "demo"}
    lone = oai.responses.create(model=MODEL, input="What did I say?")
    r = oai.responses.with_raw_response.create(model=MODEL, input="What did I say?", conversation=conv.id)
    turn = r.parse()
    # The conversation's items are the provider's context, billed as input, and recorded so.
    assert turn.usage.input_tokens > lone.usage.input_tokens
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["input_tokens"] == turn.usage.input_tokens and rec["cost_micros"] > 0, rec
    items = oai.conversations.items.list(conv.id, order="asc")
    texts = [i.content[0].text for i in items.data]
    assert texts == ["Hello!", "What did I say?", turn.output_text], texts
    added = oai.conversations.items.create(conv.id, items=[{"type": "message", "role": "user", "content": "One more."}])
    one = oai.conversations.items.retrieve(added.data[0].id, conversation_id=conv.id)
    assert one.content[0].text == "One more."
    oai.conversations.items.delete(one.id, conversation_id=conv.id)
    assert oai.conversations.update(conv.id, metadata={"topic": "done"}).metadata == {"topic": "done"}
    assert oai.conversations.retrieve(conv.id).metadata == {"topic": "done"}
    assert oai.conversations.delete(conv.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        oai.conversations.retrieve(conv.id)


def test_the_agents_sdk_keeps_a_session_in_a_conversation_through_the_gateway(stack, client):
    """The OpenAI Agents SDK's `OpenAIConversationsSession` (what its docs
    give for server-side session memory) and `Runner.run(conversation_id=…)`."""
    import agents
    from agents.memory import OpenAIConversationsSession

    agents.set_tracing_disabled(True)  # (its traces would go to api.openai.com)
    aclient = openai.AsyncOpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    agent = agents.Agent(name="Assistant", instructions="Reply very concisely.",
                         model=agents.OpenAIResponsesModel(model=MODEL, openai_client=aclient))

    async def run() -> tuple[list, list]:
        session = OpenAIConversationsSession(openai_client=aclient)
        first = await agents.Runner.run(agent, "What city is the Golden Gate Bridge in?", session=session)
        second = await agents.Runner.run(agent, "What state is it in?", session=session)
        kept = await session.get_items()
        conv = await aclient.conversations.create()
        third = await agents.Runner.run(agent, "Remember this.", conversation_id=conv.id)
        served = await aclient.conversations.items.list(conv.id, order="asc")
        await session.clear_session()
        return [first, second, third], kept, [i async for i in served]

    results, kept, served = asyncio.run(run())
    assert all(r.final_output for r in results)
    said = [i["content"][0]["text"] if isinstance(i["content"], list) else i["content"] for i in kept if i.get("type", "message") == "message"]
    assert said == ["What city is the Golden Gate Bridge in?", results[0].final_output, "What state is it in?", results[1].final_output], said
    assert [i.content[0].text for i in served] == ["Remember this.", results[2].final_output]
    # Each turn was a priced, recorded request; none of the session's bookkeeping was.
    assert [r["api"] for r in client.records()[-3:]] == ["openai_responses"] * 3


def test_keys_methods_and_paths_are_checked_before_the_provider_is_reached(stack, client):
    made = client.post("/v1/responses", {"model": MODEL, "input": "hi"}).json()
    path = f"/v1/responses/{made['id']}"
    assert call(client, "GET", path, key=None).status_code == 401
    assert call(client, "GET", path, key="tg-not-a-key").status_code == 401
    for method in ["PUT", "PATCH", "POST"]:
        r = call(client, method, path, json={})
        assert (r.status_code, error_of(r)["code"]) == (405, "method_not_allowed"), (method, r.text)
    # A key limited to models of another provider cannot reach OpenAI's objects.
    cheap = stack.control.api("POST", "/v1/keys", {"team": "interns", "project": "p", "models": ["cheap"]}, expect=201)[1]["key"]
    deadline = time.monotonic() + 10
    while (r := call(client, "GET", path, key=cheap)).status_code == 401 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (r.status_code, error_of(r)["code"]) == (403, "provider_not_allowed"), r.text
    # A virtual key in the query and Tollgate's own headers never go upstream; the rest of the query does.
    r = call(client, "GET", f"/v1/responses/{made['id']}/input_items?limit=1&key={SEARCH_KEY}&order=asc",
             headers={"x-tollgate-feature": "f", "x-tollgate-cluster": "anthropic"})
    assert r.status_code == 200 and r.json()["object"] == "list", r.text
    assert r.headers["x-mock-path"] == f"/v1/responses/{made['id']}/input_items?limit=1&order=asc"
    assert (r.headers["x-mock-auth"], r.headers["x-mock-tollgate-headers"]) == ("Bearer sk-mock-openai", "")
    # Ids that are not ids, or that become ones only once a server normalises them.
    for bad, status in [("/v1/responses/resp_1%2Fcancel", 400), ("/v1/responses/resp_1;x", 400), ("/v1/Responses/resp_1", 400),
                        ("/v1/responses/" + urllib.parse.quote("résumé"), 404), ("/v1/responses/resp_1%2F..%2F..%2Fchat%2Fcompletions", 400),
                        ("/v1/conversations/conv_1/items/a/b", 404)]:
        r = call(client, "GET", bad)
        assert r.status_code == status, (bad, r.status_code, r.text)
    assert call(client, "GET", "/v1/responses/resp_unknown").status_code == 404  # the provider's 404, passed on


def test_guardrails_check_conversation_items_and_the_audit_sees_a_refusal(client, oai):
    """The demo policy: the labs team's e-mail is redacted and 'Project
    Bluebird' blocked; card numbers are blocked for everyone."""
    labs = openai.OpenAI(base_url=client.url + "/v1", api_key=LABS_KEY, max_retries=0)
    conv = labs.conversations.create(items=[{"type": "message", "role": "user", "content": "Write to ada@example.com"}])
    kept = labs.conversations.items.list(conv.id).data[0].content[0].text
    assert kept == "Write to [EMAIL_1]", kept
    with pytest.raises(openai.BadRequestError) as e:
        labs.conversations.items.create(conv.id, items=[{"type": "message", "role": "user", "content": "About Project Bluebird"}])
    assert e.value.body["code"] == "content_blocked"
    rec = client.record(e.value.response.headers["x-tollgate-request-id"])
    assert (rec["outcome"], rec["guardrails"]["classes"], rec["provider"]) == ("rejected", {"codename": 1}, "openai"), rec
    with pytest.raises(openai.BadRequestError):
        oai.conversations.create(items=[{"type": "message", "role": "user", "content": "card 4111 1111 1111 1111"}])
    assert [i.content[0].text for i in labs.conversations.items.list(conv.id).data] == ["Write to [EMAIL_1]"]


def test_where_answers_are_scanned_stored_content_is_refused_and_without_a_provider_none_is_served(tmp_path):
    def scan_answers(pc):
        pc["guardrails"]["responses"] = "redact"

    s = sm.Stack(tmp_path / "scan", plugin_patch=scan_answers)
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
        made = c.responses.create(model=MODEL, input="hi")
        with pytest.raises(openai.PermissionDeniedError) as e:
            c.responses.retrieve(made.id)
        assert e.value.body["code"] == "stored_content_guarded"
        c.responses.delete(made.id)  # nothing comes back but the deletion
    finally:
        s.stop()

    def without(pc):
        del pc["stored_objects"]

    s = sm.Stack(tmp_path / "none", plugin_patch=without)
    try:
        r = requests.get(s.url + "/v1/responses/resp_1", headers={"authorization": f"Bearer {SEARCH_KEY}"}, timeout=10)
        assert (r.status_code, error_of(r)["code"]) == (404, "unknown_endpoint"), r.text
    finally:
        s.stop()


def test_azure_clients_and_foreign_org_headers_reach_the_objects_with_the_gateways_key(stack, client):
    """The `AzureOpenAI` client (a virtual key as its `api-key`, Azure's
    `api-version`) and a client's own `OpenAI-Organization` / `OpenAI-Project`
    headers (the mock refuses a foreign organization as OpenAI does): none of
    them reaches the provider."""
    made = client.post("/v1/responses", {"model": MODEL, "input": "hi"}).json()
    az = openai.AzureOpenAI(azure_endpoint=stack.url, api_key=SEARCH_KEY, api_version="2025-04-01-preview", max_retries=0)
    raw = az.responses.with_raw_response.retrieve(made["id"])
    assert raw.parse().id == made["id"]
    assert (raw.headers["x-mock-path"], raw.headers["x-mock-api-key"], raw.headers["x-mock-auth"]) == (
        f"/v1/responses/{made['id']}", "", "Bearer sk-mock-openai")
    r = call(client, "GET", f"/v1/responses/{made['id']}", headers={"OpenAI-Organization": "org-other", "OpenAI-Project": "proj_other"})
    assert r.status_code == 200 and r.json()["id"] == made["id"], r.text


NOTES = b"Quarterly notes: revenue grew 12%, churn fell to 3%, the launch moved to March.\n" * 40


def test_files_are_uploaded_read_and_named_by_a_response_where_no_guardrail_could_miss_them(tmp_path):
    """`files.create` (a multipart form), `retrieve`, `list`, `content`,
    `delete`, and a response whose `input_file` names the upload: billed
    the file's text as input, as the provider bills it. Without a guardrail
    policy (the demo's blocks secrets, which an uploaded file could carry:
    see the next test)."""
    def no_guardrails(pc):
        del pc["guardrails"]
        pc["list_stored_objects"] = True  # (one team's gateway: listing shows nothing of another's)

    s = sm.Stack(tmp_path, plugin_patch=no_guardrails)
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
        up = c.files.with_raw_response.create(file=("notes.txt", NOTES, "text/plain"), purpose="user_data")
        f = up.parse()
        assert (f.object, f.bytes, f.filename, f.purpose) == ("file", len(NOTES), "notes.txt", "user_data")
        assert up.headers["x-mock-auth"] == "Bearer sk-mock-openai"
        assert c.files.retrieve(f.id).bytes == len(NOTES)
        assert f.id in [x.id for x in c.files.list(purpose="user_data")]
        assert c.files.content(f.id).read() == NOTES
        ask = [{"role": "user", "content": [{"type": "input_file", "file_id": f.id}, {"type": "input_text", "text": "Summarize."}]}]
        raw = c.responses.with_raw_response.create(model=MODEL, input=ask)
        lone = c.responses.create(model=MODEL, input="Summarize.")
        turn = raw.parse()
        assert turn.usage.input_tokens - lone.usage.input_tokens == len(NOTES) // 4, (turn.usage, lone.usage)
        rec = [r for r in s.envoy.usage_records() if r["id"] == raw.headers["x-tollgate-request-id"]]
        assert rec and rec[0]["usage"]["input_tokens"] == turn.usage.input_tokens, rec
        assert c.files.delete(f.id).deleted is True
        with pytest.raises(openai.NotFoundError):
            c.files.retrieve(f.id)
        with pytest.raises(openai.NotFoundError):
            c.responses.create(model=MODEL, input=ask)  # the provider no longer has it
        with pytest.raises(openai.BadRequestError):
            c.files.create(file=("x.txt", b"x"), purpose="training")  # the provider's own refusal, passed on
    finally:
        s.stop()


def test_a_file_upload_under_a_blocking_policy_is_refused_before_it_is_sent(oai, client):
    before = requests.get(client.stack.mock.url + "/mock/stats", timeout=5).json()
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai.files.create(file=("notes.txt", NOTES, "text/plain"), purpose="user_data")
    assert e.value.body["code"] == "content_unscannable"
    assert requests.get(client.stack.mock.url + "/mock/stats", timeout=5).json() == before
    # Listing would show every key's files (all kept under the provider's one key): refused unless allowed.
    for listing in (oai.files.list, oai.vector_stores.list):
        with pytest.raises(openai.PermissionDeniedError) as e:
            listing()
        assert e.value.body["code"] == "listing_not_allowed"


def test_a_large_file_sent_in_parts_becomes_a_file_a_response_is_billed_for(tmp_path):
    """The Uploads API (`uploads.upload_file_chunked`: `POST /v1/uploads`,
    a form a part, `…/complete` naming the parts in order; `…/cancel`),
    which a file over what `files.create` takes must use: sent to the
    provider with its key, and the file it makes is read back and billed
    as any upload is. (Before: 404, the paths were not served.) The mock
    checks it as the API reference has it (tests/mock-provider/src/objects/uploads.rs)."""
    def no_guardrails(pc):
        del pc["guardrails"]

    s = sm.Stack(tmp_path, plugin_patch=no_guardrails)
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
        up = c.uploads.upload_file_chunked(file=NOTES, bytes=len(NOTES), filename="notes.txt", mime_type="text/plain", purpose="user_data", part_size=1000)
        assert (up.object, up.status, up.bytes, up.filename) == ("upload", "completed", len(NOTES), "notes.txt")
        assert (up.file.object, up.file.bytes, up.file.purpose) == ("file", len(NOTES), "user_data")
        assert c.files.content(up.file.id).read() == NOTES, "the parts, in order"
        ask = [{"role": "user", "content": [{"type": "input_file", "file_id": up.file.id}, {"type": "input_text", "text": "Summarize."}]}]
        turn = c.responses.create(model=MODEL, input=ask)
        lone = c.responses.create(model=MODEL, input="Summarize.")
        assert turn.usage.input_tokens - lone.usage.input_tokens == len(NOTES) // 4, (turn.usage, lone.usage)
        # The provider's key went, not the client's; the provider's refusals come back as they are.
        raw = c.uploads.with_raw_response.create(bytes=10, filename="x.txt", mime_type="text/plain", purpose="user_data")
        assert raw.headers["x-mock-auth"] == "Bearer sk-mock-openai"
        pending = raw.parse()
        assert c.uploads.cancel(pending.id).status == "cancelled"
        with pytest.raises(openai.BadRequestError):
            c.uploads.parts.create(pending.id, data=b"0123456789")
        with pytest.raises(openai.BadRequestError):
            c.uploads.create(bytes=10, filename="x.txt", mime_type="text/plain", purpose="training")
        # Only its methods, only with a key (which models reach it: the objects unit tests).
        assert call(s, "GET", "/v1/uploads/" + pending.id + "/cancel").status_code == 405
        assert call(s, "POST", "/v1/uploads", key=None, json={"bytes": 1, "filename": "x", "mime_type": "text/plain", "purpose": "user_data"}).status_code == 401
    finally:
        s.stop()


def test_a_file_sent_in_parts_under_a_blocking_policy_is_refused_before_it_is_sent(oai, client):
    """A part is any slice of a file, a batch's line cut anywhere: the
    guardrails cannot read it as they read a batch file sent whole, so
    under a policy that blocks or redacts neither an upload nor a part goes."""
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai.uploads.create(bytes=len(NOTES), filename="notes.txt", mime_type="text/plain", purpose="batch")
    assert e.value.body["code"] == "content_unscannable"
    assert "x-mock-auth" not in e.value.response.headers, "answered by the gateway, not the provider"
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai.uploads.parts.create("upload_abc123", data=NOTES)
    assert e.value.body["code"] == "content_unscannable"
    assert "x-mock-auth" not in e.value.response.headers


def test_anthropic_clients_files_go_to_anthropic_with_its_key_and_a_document_names_them(tmp_path):
    """The Anthropic SDK's `beta.files` (its Files API, on the same
    `/v1/files` paths as OpenAI's, told apart by `anthropic-version`): to the
    Anthropic-format `stored_objects` provider with its key; a message's
    `document` block naming the file is billed its text. Without a guardrail
    policy, as above."""
    import anthropic

    def no_guardrails(pc):
        del pc["guardrails"]
        pc["list_stored_objects"] = True

    s = sm.Stack(tmp_path, plugin_patch=no_guardrails)
    try:
        c = anthropic.Anthropic(base_url=s.url, api_key=SEARCH_KEY, max_retries=0)
        up = c.beta.files.with_raw_response.upload(file=("notes.txt", NOTES, "text/plain"), expires_in_seconds=3600,
                                                   extra_headers={"anthropic-workspace-id": "wrkspc_client"})
        f = up.parse()
        assert (f.type, f.filename, f.mime_type, f.size_bytes, f.downloadable) == ("file", "notes.txt", "text/plain", len(NOTES), False)
        assert f.id.startswith("file_") and up.headers["x-mock-auth"] == "sk-ant-mock"
        assert up.headers["x-mock-path"] == "/v1/files"
        assert c.beta.files.retrieve_metadata(f.id).size_bytes == len(NOTES)
        assert f.id in [x.id for x in c.beta.files.list()]
        # OpenAI's files are another provider's: this one is not among them.
        o = openai.OpenAI(base_url=s.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
        assert f.id not in [x.id for x in o.files.list()]
        ask = [{"role": "user", "content": [{"type": "document", "source": {"type": "file", "file_id": f.id}}, {"type": "text", "text": "Summarize."}]}]
        raw = c.beta.messages.with_raw_response.create(model="claude-sonnet-4-6", max_tokens=64, betas=["files-api-2025-04-14"], messages=ask)
        lone = c.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "Summarize."}])
        msg = raw.parse()
        assert msg.usage.input_tokens - lone.usage.input_tokens >= len(NOTES) // 4, (msg.usage, lone.usage)
        rec = [r for r in s.envoy.usage_records() if r["id"] == raw.headers["x-tollgate-request-id"]]
        assert rec and rec[0]["usage"]["input_tokens"] == msg.usage.input_tokens and rec[0]["cost_micros"] > 0, rec
        with pytest.raises(anthropic.BadRequestError):
            c.beta.files.download(f.id)  # an upload cannot be downloaded: the provider's refusal
        c.beta.files.delete(f.id)
        with pytest.raises(anthropic.NotFoundError):
            c.beta.files.retrieve_metadata(f.id)
    finally:
        s.stop()


def test_an_anthropic_clients_file_never_goes_to_openai(tmp_path, client):
    """With OpenAI's keeper alone, Anthropic's Files API is an other path
    (denied), never sent to OpenAI with OpenAI's key; with both (the demo),
    the demo's blocking policy refuses the upload before it leaves."""
    import anthropic

    def openai_only(pc):
        pc["stored_objects"] = "openai"
        pc["list_stored_objects"] = True
        del pc["guardrails"]

    s = sm.Stack(tmp_path, plugin_patch=openai_only)
    try:
        c = anthropic.Anthropic(base_url=s.url, api_key=SEARCH_KEY, max_retries=0)
        with pytest.raises(anthropic.NotFoundError) as e:
            c.beta.files.upload(file=("notes.txt", NOTES, "text/plain"))
        assert "is not routed" in str(e.value)
        o = openai.OpenAI(base_url=s.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
        assert o.files.list().data == []
    finally:
        s.stop()
    demo = anthropic.Anthropic(base_url=client.url, api_key=SEARCH_KEY, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        demo.beta.files.upload(file=("notes.txt", NOTES, "text/plain"))
    assert e.value.body["error"]["code"] == "content_unscannable"


def test_a_vector_store_is_filled_searched_and_used_by_file_search_through_the_gateway(tmp_path):
    """`vector_stores.*` with the SDK's own helpers (`files.upload_and_poll`,
    `file_batches.create_and_poll`), a search, and a response whose
    `file_search` tool searches the store: priced per search as before."""
    def no_guardrails(pc):
        del pc["guardrails"]

    s = sm.Stack(tmp_path, plugin_patch=no_guardrails)
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
        vs = c.vector_stores.create(name="notes", metadata={"team": "search"})
        assert (vs.object, vs.name, vs.file_counts.total) == ("vector_store", "notes", 0)
        attached = c.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=("notes.txt", NOTES, "text/plain"))
        assert (attached.object, attached.status, attached.vector_store_id) == ("vector_store.file", "completed", vs.id)
        other = c.files.create(file=("faq.txt", b"Refunds take five business days.\n", "text/plain"), purpose="assistants")
        batch = c.vector_stores.file_batches.create_and_poll(vector_store_id=vs.id, file_ids=[other.id])
        assert (batch.status, batch.file_counts.completed) == ("completed", 1)
        assert [f.id for f in c.vector_stores.file_batches.list_files(batch.id, vector_store_id=vs.id)] == [other.id]
        with pytest.raises(openai.BadRequestError):
            c.vector_stores.file_batches.cancel(batch.id, vector_store_id=vs.id)  # done: the provider's refusal
        assert c.vector_stores.retrieve(vs.id).file_counts.total == 2
        hits = c.vector_stores.search(vs.id, query="What happened to churn?")
        assert [h.filename for h in hits.data] == ["notes.txt"] and "churn fell" in hits.data[0].content[0].text
        text = c.vector_stores.files.content(attached.id, vector_store_id=vs.id)
        assert "".join(p.text for p in text.data).encode() == NOTES
        c.vector_stores.files.update(attached.id, vector_store_id=vs.id, attributes={"quarter": "q3"})
        assert c.vector_stores.files.retrieve(attached.id, vector_store_id=vs.id).attributes == {"quarter": "q3"}
        assert c.vector_stores.update(vs.id, name="q3 notes").name == "q3 notes"
        # The file_search tool over the store: one search, priced per call.
        raw = c.responses.with_raw_response.create(model=MODEL, input="What happened to churn?",
                                                   tools=[{"type": "file_search", "vector_store_ids": [vs.id]}])
        rec = [r for r in s.envoy.usage_records() if r["id"] == raw.headers["x-tollgate-request-id"]]
        assert rec and rec[0]["usage"]["file_search_calls"] == 1 and rec[0]["cost_micros"] > 0, rec
        c.vector_stores.files.delete(other.id, vector_store_id=vs.id)
        assert c.vector_stores.delete(vs.id).deleted is True
        with pytest.raises(openai.NotFoundError):
            c.vector_stores.retrieve(vs.id)
        with pytest.raises(openai.NotFoundError):
            c.vector_stores.create(file_ids=["file-none"])  # a file the provider does not keep
    finally:
        s.stop()


def test_a_vector_store_search_passes_the_guardrails(oai, client):
    """The demo's policy blocks card numbers: a search query carrying one is
    refused before it leaves, and the audit sees it."""
    vs = oai.vector_stores.create(name="empty")
    assert oai.vector_stores.search(vs.id, query="refund policy").data == []
    with pytest.raises(openai.BadRequestError) as e:
        oai.vector_stores.with_raw_response.search(vs.id, query="card 4111 1111 1111 1111")
    assert e.value.body["code"] == "content_blocked"
    rec = client.record(e.value.response.headers["x-tollgate-request-id"])
    assert (rec["outcome"], rec["guardrails"]["classes"]) == ("rejected", {"card": 1}), rec
    oai.vector_stores.delete(vs.id)


def test_a_stored_chat_completion_is_read_back_updated_and_deleted_but_not_listed(oai, client):
    """`store: true` chat completions: `chat.completions.retrieve`,
    `messages.list`, `update` (metadata), `delete` by id; the list of every
    key's (`GET /v1/chat/completions`) is not served."""
    made = oai.chat.completions.create(model="openai/gpt-5.4", messages=[{"role": "user", "content": "Hello there"}],
                                       store=True, metadata={"feature": "greeting"})
    raw = oai.chat.completions.with_raw_response.retrieve(made.id)
    got = raw.parse()
    assert (got.id, got.choices[0].message.content, got.metadata) == (made.id, made.choices[0].message.content, {"feature": "greeting"})
    assert no_record_for(client, raw.headers["x-tollgate-request-id"]), "reading a completion back is no usage"
    assert [m.content for m in oai.chat.completions.messages.list(made.id)] == ["Hello there"]
    assert oai.chat.completions.update(made.id, metadata={"feature": "done"}).metadata == {"feature": "done"}
    assert oai.chat.completions.delete(made.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.retrieve(made.id)
    with pytest.raises(openai.APIStatusError) as e:
        oai.chat.completions.list()
    assert e.value.status_code == 405
