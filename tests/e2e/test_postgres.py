"""The control service on a real PostgreSQL, two replicas: the state is the
same on both, concurrent ingest of the same records through both counts each
once, and the full request path works with Envoy balancing the replicas."""
from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import stack as sm
from conftest import Client
from test_budgets import exhaust, mock_stats, new_key, spend, wait_until


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    p = sm.Postgres(tmp_path_factory.mktemp("pg"))
    yield p
    p.stop()


def record(team: str, cost: int) -> dict:
    return {"v": 1, "id": str(uuid.uuid4()), "ts_ms": int(time.time() * 1000), "key_id": "k", "key_hash": "0" * 64,
            "team": team, "project": "p", "feature": None, "prompt_version": None, "user": None, "tags": {},
            "api": "openai_chat", "provider": "openai", "route": None, "model_requested": None, "model_upstream": "gpt-5.4",
            "model_served": None, "stream": False, "status": 200, "outcome": "ok", "error_code": None,
            "usage": {"input_tokens": 10, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 5,
                      "reasoning_tokens": 0}, "usage_source": "provider", "cost_micros": cost, "priced": True,
            "latency_ms": 1, "ttfb_ms": 1}


def test_two_replicas_share_state_and_count_once(pg, tmp_path):
    a = sm.Control(tmp_path, db=pg.conninfo, name="a")
    b = sm.Control(tmp_path, db=pg.conninfo, name="b")
    try:
        key = new_key(a, "pgteam", key_id="pg-key")
        keys_b = b.api("GET", "/v1/keys", expect=200)[1]["keys"]
        assert [k["id"] for k in keys_b] == ["pg-key"] and keys_b[0]["key_hash"] == key["key_hash"]
        b.api("PUT", "/v1/budgets/team/pgteam", {"limit_micros": 10**9, "period": "monthly"}, expect=200)
        st = a.api("GET", "/v1/state?node=envoy-x", token=sm.FILTER_TOKEN, expect=200)[1]
        # The whole budget but the sixteenth kept free for Envoys joining.
        assert st["budgets"][0]["scope_id"] == "pgteam" and st["budgets"][0]["share_micros"] == 10**9 - 10**9 // 16

        # 2000 records, each sent twice, concurrently, half through each replica.
        recs = [record("pgteam", 7) for _ in range(2000)]
        batches = [recs[i:i + 100] for i in range(0, len(recs), 100)]
        jobs = [(r, batch) for batch in batches for r in (a, b)] + [(r, batch) for batch in batches for r in (b, a)]

        def send(job):
            replica, batch = job
            status, ack = replica.api("POST", "/v1/usage", {"node": "n", "records": batch}, token=sm.FILTER_TOKEN)
            assert status == 200, ack
            return ack["accepted"], ack["duplicates"]

        with ThreadPoolExecutor(8) as ex:
            acks = list(ex.map(send, jobs))
        assert sum(x for x, _ in acks) == 2000 and sum(d for _, d in acks) == 6000
        for replica in (a, b):
            s = replica.api("GET", "/v1/spend?scope_type=team&scope_id=pgteam", expect=200)[1]
            assert (s["requests"], s["cost_micros"]) == (2000, 14000)
            bud = replica.api("GET", "/v1/budgets/team/pgteam", expect=200)[1]
            assert bud["used_micros"] == 14000 and bud["used_tokens"] == 30000
        # reports and requests work on PostgreSQL too
        rows = b.api("GET", "/v1/reports/spend?group_by=team,model", expect=200)[1]["rows"]
        assert rows == [{"team": "pgteam", "model": "gpt-5.4", "requests": 2000, "input_tokens": 20000,
                         "cached_input_tokens": 0, "output_tokens": 10000, "cost_micros": 14000,
                         "cache_share_pct": 0.0, "cache_hit_rate_pct": None, "cache_reported_input_tokens": 0,
                         "cache_savings_micros": 0, "cache_savings_usd": "0.000000", "errors": 0, "rate_limited": 0}]
        rq = a.api("POST", "/v1/budget-requests", {"scope_type": "team", "scope_id": "pgteam", "limit_micros": 2 * 10**9,
                                                   "justification": "growth in december"}, expect=201)[1]
        # concurrent approvals through both replicas: one acts, the others are told it was already decided
        with ThreadPoolExecutor(6) as ex:
            answers = list(ex.map(lambda i: (a, b)[i % 2].api("POST", f"/v1/budget-requests/{rq['id']}/approve",
                                                             {"decided_by": f"ops{i}"}), range(6)))
        assert sorted(st for st, _ in answers) == [200, 409, 409, 409, 409, 409], answers
        assert a.api("GET", "/v1/budgets/team/pgteam", expect=200)[1]["limit_micros"] == 2 * 10**9
    finally:
        a.stop()
        b.stop()


def test_full_path_with_envoy_balancing_two_postgres_replicas(pg, tmp_path):
    # a fresh database for this test
    db = pg.conninfo.rsplit("/", 1)[0] + "/tollgate_e2e"
    pg._run("createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "tollgate", "tollgate_e2e")
    s = sm.Stack(tmp_path, control_db=db, control_replicas=2)
    try:
        key = new_key(s.control, "fleet", key_id="fleet-key")
        s.controls[1].api("PUT", "/v1/budgets/team/fleet", {"limit_micros": 6_000, "period": "monthly"}, expect=200)
        wait_until(lambda: Client(s).chat("cheap", key=key["key"], extra={"max_tokens": 5}).status_code == 200, what="key")
        exhaust(s, key["key"])
        stats = mock_stats(s)
        wait_until(lambda: spend(s)["requests"] >= stats["requests"], timeout=15, what="records ingested")
        time.sleep(1)
        for replica in s.controls:
            t = replica.api("GET", "/v1/spend", expect=200)[1]
            assert (t["input_tokens"], t["output_tokens"]) == (stats["input_tokens"], stats["output_tokens"])
            assert replica.api("GET", "/v1/budgets/team/fleet", expect=200)[1]["used_micros"] <= 6_000
    finally:
        s.stop()


def test_lost_database_connections_are_replaced(pg, tmp_path):
    """The store keeps a pool: when PostgreSQL drops its connections (a failover, an
    idle timeout, a restart), the next calls get new ones instead of failing forever."""
    db = pg.conninfo + "?application_name=tollgate-pool-test"
    c = sm.Control(tmp_path, db=db, name="pooled")
    try:
        c.api("PUT", "/v1/budgets/team/pooled", {"limit_micros": 10**6, "period": "monthly"}, expect=200)
        kill = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'tollgate-pool-test' AND pid <> pg_backend_pid()")
        out = subprocess.run([str(pg.bin / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "tollgate", "-d", "tollgate",
                              "-tAc", kill], capture_output=True, text=True, timeout=30, check=True).stdout
        assert int(out.strip()) >= 1, out
        deadline = time.monotonic() + 10
        while True:
            status, body = c.api("GET", "/v1/budgets/team/pooled")
            if status == 200:
                break
            assert time.monotonic() < deadline, f"the store never recovered: {status} {body}"
            time.sleep(0.2)
        assert body["limit_micros"] == 10**6
        assert c.api("POST", "/v1/usage", {"node": "n", "records": [record("pooled", 7)]}, token=sm.FILTER_TOKEN)[0] == 200
    finally:
        c.stop()


def private_mib(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean", "Private_Dirty"))) / 1024


def test_batches_of_every_size_leave_postgres_and_the_service_memory_flat(pg, tmp_path):
    """Envoys send whatever gathered since their last flush, so batches come in every
    size. A statement's text followed its row count and PostgreSQL keeps every statement
    a connection prepared: 500 sizes grew PostgreSQL's backends by 440 MiB and the
    service by 90 MiB, and it went on with every new size. Now statements are cut into
    ten sizes (db::statement_chunks) and a connection forgets them past 256."""
    db = pg.conninfo + "?application_name=tollgate-memory-test"
    c = sm.Control(tmp_path, db=db, name="memory")
    sql = ("SELECT pid FROM pg_stat_activity WHERE application_name = 'tollgate-memory-test' "
           "AND pid <> pg_backend_pid()")

    def backends() -> float:
        out = subprocess.run([str(pg.bin / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "tollgate", "-d", "tollgate",
                              "-tAc", sql], capture_output=True, text=True, timeout=30, check=True).stdout
        return sum(private_mib(int(p)) for p in out.split())

    def service() -> float:
        return private_mib(c.proc.pid)

    def send(sizes):
        for n in sizes:
            batch = {"node": "memory", "records": [record("memory", 1) for _ in range(n)]}
            status, ack = c.api("POST", "/v1/usage", batch, token=sm.FILTER_TOKEN)
            assert status == 200 and ack["accepted"] == n, ack

    try:
        # Other tests of this module share the database: count from what it holds now.
        dims = ["team", "project", "key", "model", "provider", "feature", "prompt_version"]
        last = ",".join(list(itertools.permutations(dims, 4))[-1])
        earlier = c.api("GET", "/v1/spend", expect=200)[1]["requests"]
        reported = sum(r["requests"] for r in c.api("GET", f"/v1/reports/spend?group_by={last}", expect=200)[1]["rows"])
        sent = 8 * 501 + sum(range(2, 500))
        send([500, 1] * 8)  # every connection of the pool open, the full statement prepared
        before = (backends(), service())
        send(range(2, 500))
        after = (backends(), service())
        print(f"PostgreSQL backends {before[0]:.1f} -> {after[0]:.1f} MiB, service {before[1]:.1f} -> {after[1]:.1f} MiB")
        assert after[0] - before[0] < 150, (before, after)
        assert after[1] - before[1] < 40, (before, after)
        assert c.api("GET", "/v1/spend", expect=200)[1]["requests"] == earlier + sent
        # Reports are statements of as many shapes as their questions: 2,520 of
        # them grew the backends by 121 MiB before a connection forgot its
        # statements past 256 (not at all since). (Over an hour of 1970: the shapes
        # matter here, not the rows; the last one is asked of today too.)
        before = backends()
        for group in itertools.permutations(dims, 4):
            for bucket in ("", "&bucket=hour", "&bucket=day"):
                report = c.api("GET", f"/v1/reports/spend?group_by={','.join(group)}{bucket}&from_ms=0&to_ms=3600000", expect=200)[1]
                assert report["rows"] == [], (group, report)
        assert ",".join(group) == last
        report = c.api("GET", f"/v1/reports/spend?group_by={last}", expect=200)[1]
        assert sum(r["requests"] for r in report["rows"]) == reported + sent, report
        after = backends()
        print(f"2,520 report shapes: PostgreSQL backends {before:.1f} -> {after:.1f} MiB")
        assert after - before < 80, (before, after)
    finally:
        c.stop()
