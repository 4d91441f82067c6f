"""Virtual keys at scale: each Envoy keeps one shared-data entry per key,
filled from the control service's key changes (GET /v1/key-changes), and
`tollgate keys import` creates keys in bulk from CSV or JSON Lines (and
`tollgate budgets import` budgets)."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import time

import pytest
import requests

import stack as sm
from conftest import Client, error_of
from test_budgets import key_works, new_key, status_of, wait_until
from test_cli import tg


@pytest.fixture(scope="module")
def ks(tmp_path_factory):
    s = sm.Stack(tmp_path_factory.mktemp("keys"), envoys=2)
    yield s
    s.stop()


def works_everywhere(s: sm.Stack, key: str) -> bool:
    return all(key_works(e.url, key) for e in s.envoys)


def refused_everywhere(s: sm.Stack, key: str) -> bool:
    return not any(key_works(e.url, key) for e in s.envoys)


def test_created_revoked_and_rotated_keys_take_effect_on_every_envoy_within_two_seconds(ks):
    k = new_key(ks.control, "fast")
    t0 = time.monotonic()
    wait_until(lambda: works_everywhere(ks, k["key"]), timeout=5, step=0.05, what="new key")
    created = time.monotonic() - t0

    t0 = time.monotonic()
    rotated = ks.control.api("POST", f"/v1/keys/{k['id']}/rotate", expect=200)[1]
    wait_until(lambda: works_everywhere(ks, rotated["key"]) and refused_everywhere(ks, k["key"]), timeout=5, step=0.05,
               what="rotation")
    rotation = time.monotonic() - t0

    t0 = time.monotonic()
    ks.control.api("POST", f"/v1/keys/{k['id']}/revoke", expect=200)
    wait_until(lambda: refused_everywhere(ks, rotated["key"]), timeout=5, step=0.05, what="revocation")
    revocation = time.monotonic() - t0
    print(f"effective on 2 Envoys after: create {created:.2f} s, rotate {rotation:.2f} s, revoke {revocation:.2f} s")
    assert max(created, rotation, revocation) < 2.0
    r = requests.post(ks.envoys[0].url + "/v1/chat/completions", json={"model": "cheap", "messages": []},
                      headers={"authorization": f"Bearer {rotated['key']}"}, timeout=5)
    assert r.status_code == 401 and error_of(r)["code"] == "invalid_api_key"


def test_the_state_document_carries_no_keys_only_their_sequence(ks):
    new_key(ks.control, "seqteam")
    st = ks.control.api("GET", "/v1/state?node=probe", token=sm.FILTER_TOKEN, expect=200)[1]
    assert "keys" not in st and st["keys_seq"] >= 1
    page = ks.control.api("GET", f"/v1/key-changes?since={st['keys_seq'] - 1}&limit=10", token=sm.FILTER_TOKEN,
                          expect=200)[1]
    assert page["seq"] == st["keys_seq"] and page["more"] is False
    assert page["changes"][-1]["op"] == "put" and page["changes"][-1]["key"]["team"] == "seqteam"
    # never the key itself, only its hash
    assert "key" not in page["changes"][-1]["key"]


def test_import_csv_keeps_migrated_keys_working_and_makes_the_missing_ones(ks, tmp_path):
    legacy = "sk-legacy-0123456789abcdef"
    other = "sk-other-gateway-fedcba9876543210"
    csv = tmp_path / "keys.csv"
    csv.write_text(
        "id,team,project,models,tags,key,key_hash\n"
        f"imp-1,migrated,web,cheap;openai/*,env=prod;tier=1,{legacy},\n"
        f'imp-2,migrated,"web",,,,{hashlib.sha3_256(other.encode()).hexdigest()}\n'
        "imp-3,newteam,api,,,,\n")
    made = tmp_path / "made.jsonl"
    p = tg(ks, "keys", "import", str(csv), "--made", str(made))
    assert "3 keys imported" in p.stderr
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o600
    made_rows = [json.loads(line) for line in made.read_text().splitlines()]
    assert [(m["line"], m["id"]) for m in made_rows] == [(4, "imp-3")]
    t0 = time.monotonic()
    for key in (legacy, other, made_rows[0]["key"]):
        wait_until(lambda key=key: works_everywhere(ks, key), timeout=5, step=0.05, what=f"imported key {key[:10]}")
    assert time.monotonic() - t0 < 2.5
    k1 = ks.control.api("GET", "/v1/keys/imp-1", expect=200)[1]
    assert k1["models"] == ["cheap", "openai/*"] and k1["tags"] == {"env": "prod", "tier": "1"}
    assert k1["key_hash"] == hashlib.sha3_256(legacy.encode()).hexdigest()


def test_import_jsonl_from_stdin(ks, tmp_path):
    rows = [{"id": f"jl-{i}", "team": "jsonl", "project": "p", "key": f"sk-jsonl-key-number-{i:04d}"} for i in range(250)]
    f = tmp_path / "k.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    p = tg(ks, "keys", "import", str(f), "--batch", "100")
    assert "imported 250\n" in p.stderr and "250 keys imported" in p.stderr and p.stdout == ""
    wait_until(lambda: works_everywhere(ks, "sk-jsonl-key-number-0249"), timeout=5, what="last imported key")


def test_a_bad_row_stops_the_import_names_its_line_and_creates_nothing_of_its_batch(ks, tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("id,team,project\nbad-1,ok,p\nbad-2,not a team!,p\nbad-3,ok,p\n")
    p = tg(ks, "keys", "import", str(csv), ok=False)
    assert p.returncode != 0 and "line 3" in p.stderr and "--skip 0" in p.stderr, p.stderr
    ids = {k["id"] for k in ks.control.api("GET", "/v1/keys", expect=200)[1]["keys"]}
    assert not ids & {"bad-1", "bad-2", "bad-3"}
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("id,team,project,secret\nx,t,p,s\n")
    p = tg(ks, "keys", "import", str(unknown), ok=False)
    assert "unknown column 'secret'" in p.stderr
    # a duplicate id inside one batch, and one clashing with an existing key
    dup = tmp_path / "dup.jsonl"
    dup.write_text(json.dumps({"id": "d1", "team": "t", "project": "p"}) + "\n" + json.dumps({"id": "d1", "team": "t", "project": "p"}) + "\n")
    assert "appears twice" in tg(ks, "keys", "import", str(dup), ok=False).stderr
    clash = tmp_path / "clash.jsonl"
    clash.write_text(json.dumps({"id": "imp-1", "team": "t", "project": "p"}) + "\n")
    assert "already exists" in tg(ks, "keys", "import", str(clash), ok=False).stderr


def test_an_unknown_key_before_the_keys_are_loaded_is_retryable_not_invalid(tmp_path):
    def patch(pc):
        pc["control"]["cluster"] = "no_such_cluster"  # the control service is never reached
    s = sm.Stack(tmp_path, plugin_patch=patch, wait_keys=False)
    try:
        cli = Client(s)
        r = cli.chat("cheap", key="tg-not-loaded-yet-0000000000")
        assert r.status_code == 503 and error_of(r)["code"] == "keys_loading", r.text
        demo_key = next(iter(sm.DEMO_KEYS))
        assert cli.chat("cheap", key=demo_key).status_code == 200, "keys in the configuration always work"
    finally:
        s.stop()


def test_budgets_import_sets_per_key_budgets_in_bulk_and_every_envoy_enforces_them(ks, tmp_path):
    keys = {f"bi-{i}": f"sk-budget-import-key-{i:04d}" for i in range(3)}
    kf = tmp_path / "bk.jsonl"
    kf.write_text("".join(json.dumps({"id": i, "team": "bimport", "project": "p", "key": k}) + "\n" for i, k in keys.items()))
    tg(ks, "keys", "import", str(kf))
    csv = tmp_path / "budgets.csv"
    csv.write_text("scope_type,scope_id,limit_micros,period,soft_pct,hard_pct\n"
                   "key,bi-0,1,monthly,off,\n"
                   "key,bi-1,1000000000,daily,,\n"
                   "team,bimport,1000000000,monthly,50,100\n")
    p = tg(ks, "budgets", "import", str(csv))
    assert "3 budgets imported" in p.stderr, p.stderr
    b0 = ks.control.api("GET", "/v1/budgets/key/bi-0", expect=200)[1]
    assert (b0["limit_micros"], b0["soft_pct"], b0["hard_pct"]) == (1, None, 100)
    assert ks.control.api("GET", "/v1/budgets/team/bimport", expect=200)[1]["soft_pct"] == 50
    for e in ks.envoys:
        wait_until(lambda e=e: status_of(e.url, keys["bi-0"]) == 429, timeout=5, what="the imported budget on every Envoy")
        assert status_of(e.url, keys["bi-1"]) == 200
    # A bad row stops the import at its line; nothing of its batch is set.
    bad = tmp_path / "bad.csv"
    bad.write_text("scope_type,scope_id,limit_micros,period\nkey,bi-2,5,monthly\nkey,bi-1,7,yearly\n")
    p = tg(ks, "budgets", "import", str(bad), ok=False)
    assert p.returncode != 0 and "line 3" in p.stderr and "period" in p.stderr, p.stderr
    ks.control.api("GET", "/v1/budgets/key/bi-2", expect=404)
    assert ks.control.api("GET", "/v1/budgets/key/bi-1", expect=200)[1]["limit_micros"] == 1000000000
    frac = tmp_path / "frac.csv"
    frac.write_text("scope_type,scope_id,limit_micros,period\nkey,bi-2,5.5,monthly\n")
    assert "whole number" in tg(ks, "budgets", "import", str(frac), ok=False).stderr
    dup = tmp_path / "dup.jsonl"
    row = {"scope_type": "key", "scope_id": "bi-2", "limit_micros": 5, "period": "monthly"}
    dup.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    assert "appears twice" in tg(ks, "budgets", "import", str(dup), ok=False).stderr
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({**row, "limit_usd": 5}) + "\n")
    assert "limit_usd" in tg(ks, "budgets", "import", str(unknown), ok=False).stderr
    # Imported again from JSON Lines: the budget is replaced, as by PUT.
    again = tmp_path / "again.jsonl"
    again.write_text(json.dumps({"scope_type": "key", "scope_id": "bi-0", "limit_micros": 10**9, "period": "monthly"}) + "\n")
    assert "1 budgets imported" in tg(ks, "budgets", "import", str(again)).stderr
    for e in ks.envoys:
        wait_until(lambda e=e: status_of(e.url, keys["bi-0"]) == 200, timeout=5, what="the replaced budget on every Envoy")
