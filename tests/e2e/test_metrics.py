"""Metrics: the filter's Envoy stats reach /stats/prometheus with team,
project, model, provider and outcome as labels; the control service serves
/metrics."""
from __future__ import annotations

import re
import time

import requests

from conftest import LABS_KEY, Client


def scrape(url: str) -> str:
    return requests.get(url, timeout=5).text


def value(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        m = re.match(r"^([^{]+)\{(.*)\} (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def test_filter_metrics_carry_labels(stack, client: Client):
    admin = f"http://127.0.0.1:{stack.envoy.admin_port}/stats/prometheus"
    labels = dict(team="labs", project="assistant", model="deepseek-v4", provider="deepseek")
    before_req = value(scrape(admin), "tollgate_requests", outcome="ok", **labels)
    before_cost = value(scrape(admin), "tollgate_cost_micros", **labels)
    costs = []
    for _ in range(3):
        r = client.chat("cheap", key=LABS_KEY)
        assert r.status_code == 200
        costs.append(int(r.headers["x-tollgate-cost-micros"]))
    r = client.chat("cheap", key=LABS_KEY, headers={"x-mock-status": "500"})
    assert r.status_code == 500
    # Counters are summed in each worker and handed to Envoy on its tick (every second).
    deadline = time.monotonic() + 5
    while True:
        text = scrape(admin)
        if value(text, "tollgate_requests", outcome="ok", **labels) - before_req >= 3 and \
                value(text, "tollgate_requests", outcome="provider_error", **dict(labels, model="cheap")) >= 1:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    assert value(text, "tollgate_requests", outcome="ok", **labels) - before_req == 3
    assert value(text, "tollgate_cost_micros", **labels) - before_cost == sum(costs)
    # a failed request is labelled by the route that matched ("cheap"), never by a model name
    # the client could invent (docs/metrics.md)
    failed = dict(labels, model="cheap")
    assert value(text, "tollgate_requests", outcome="provider_error", **failed) >= 1
    assert value(text, "tollgate_upstream_errors", **failed) >= 1
    assert value(text, "tollgate_output_tokens", **labels) >= 36
    assert "tollgate_latency_ms_bucket{" in text
    # no raw (untagged) tollgate names leak through
    assert "tollgate_requests_team_" not in text


def test_control_service_metrics(stack, client: Client):
    client.chat("cheap", key=LABS_KEY)
    deadline = time.monotonic() + 10
    while True:
        text = scrape(stack.control.url + "/metrics")
        if value(text, "tollgate_control_ingest_records_total") > 0 or text.count("tollgate_control_ingest_records_total ") and \
                float(re.search(r"^tollgate_control_ingest_records_total (\S+)$", text, re.M).group(1)) > 0:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    assert re.search(r"^tollgate_control_state_polls_total [1-9]", text, re.M), text
    assert "# TYPE tollgate_budget_used_micros gauge" in text
