"""envoy/istio/: every manifest validates against the Kubernetes and Istio
schemas, the OCI image is a well-formed Wasm artifact, and the EnvoyFilter
patches, applied to an Istio-style gateway configuration, run on Envoy 1.36
(Istio 1.28's) with the core checks: key auth, routing on the body, provider
keys from the environment, usage and cost, budgets with the control service.

Schemas: Kubernetes from PyPI's `kubernetes-validate` 1.37.0 (the upstream
OpenAPI schemas, strict: unknown fields refused); Istio from PyPI's
`cloudcoil-models-istio` 1.24.2.1 (models generated from Istio's CRD
openAPIV3Schema, crd-all.gen.yaml), checked strictly here: a field the model
does not know is an error, not ignored.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time

import kubernetes_validate
import pytest
import requests
from cloudcoil.models.istio.networking import v1 as istio_v1
from cloudcoil.models.istio.networking import v1alpha3 as istio_v1alpha3

import istio
import oci
import stack as sm
from conftest import expected_cost, websocket_upgrade
from test_budgets import new_key, spend, wait_until

K8S_VERSION = "1.30.0"
ISTIO_MODELS = {
    ("networking.istio.io/v1alpha3", "EnvoyFilter"): istio_v1alpha3.EnvoyFilter,
    ("networking.istio.io/v1alpha3", "ServiceEntry"): istio_v1alpha3.ServiceEntry,
    ("networking.istio.io/v1alpha3", "DestinationRule"): istio_v1alpha3.DestinationRule,
    ("networking.istio.io/v1", "Gateway"): istio_v1.Gateway,
    ("networking.istio.io/v1", "VirtualService"): istio_v1.VirtualService,
}


def unknown_fields(given, known, path="") -> list[str]:
    """Paths present in the manifest but not in what the schema model kept."""
    if isinstance(given, dict):
        if not isinstance(known, dict):
            return [path]
        out = []
        for k, v in given.items():
            if k not in known:
                out.append(f"{path}.{k}")
            elif not (isinstance(v, dict) and k in ("value", "typed_config")):  # free-form Envoy config
                out += unknown_fields(v, known[k], f"{path}.{k}")
        return out
    if isinstance(given, list):
        return [p for g, k in zip(given, known) for p in unknown_fields(g, k, path + "[]")]
    return []


def validate(doc: dict) -> None:
    model = ISTIO_MODELS.get((doc["apiVersion"], doc["kind"]))
    if model is None:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        return
    parsed = model.model_validate(doc)
    kept = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    extra = unknown_fields(doc, kept)
    assert not extra, f"{doc['kind']} {doc['metadata']['name']}: unknown fields {extra}"


def test_every_manifest_validates_against_the_schemas():
    manifests = istio.all_manifests()
    kinds = {d["kind"] for _, d in manifests}
    assert {"EnvoyFilter", "ServiceEntry", "DestinationRule", "Gateway", "VirtualService", "Deployment", "Service",
            "Secret", "PersistentVolumeClaim", "ConfigMap", "Namespace"} <= kinds, kinds
    for name, d in manifests:
        try:
            validate(d)
        except Exception as e:  # noqa: BLE001 - name the file in the failure
            raise AssertionError(f"{name}: {e}") from e


def test_the_gateway_patch_applied_to_a_gateway_deployment_validates():
    patch = istio.docs("gateway-patch.yaml")[0]
    gateway = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
               "spec": {"selector": {"matchLabels": {"istio": "ingressgateway"}},
                        "template": {"metadata": {"labels": {"istio": "ingressgateway"}},
                                     "spec": {"containers": [{"name": "istio-proxy", "image": "auto"}]}}}}
    # a strategic merge: containers merge by name
    tpl = gateway["spec"]["template"]
    tpl["metadata"].setdefault("annotations", {}).update(patch["spec"]["template"]["metadata"]["annotations"])
    (c,) = patch["spec"]["template"]["spec"]["containers"]
    tpl["spec"]["containers"][0].update({k: v for k, v in c.items() if k != "name"})
    validate(gateway)
    assert tpl["metadata"]["annotations"]["sidecar.istio.io/bootstrapOverride"] == "tollgate-bootstrap"


@pytest.mark.parametrize("break_it", ["k8s", "istio_field", "istio_enum"])
def test_the_validation_can_fail(break_it):
    docs = {d["kind"]: d for _, d in istio.all_manifests()}
    if break_it == "k8s":
        d = json.loads(json.dumps(docs["Deployment"]))
        d["spec"]["replica"] = 2
    elif break_it == "istio_field":
        d = json.loads(json.dumps(docs["EnvoyFilter"]))
        d["spec"]["configPatches"][0]["patch"]["operaton"] = "ADD"
    else:
        d = json.loads(json.dumps(docs["EnvoyFilter"]))
        d["spec"]["configPatches"][1]["patch"]["operation"] = "INSERT_SOMEWHERE"
    with pytest.raises(Exception):
        validate(d)


def test_the_plugin_configuration_is_one_text_everywhere():
    configs = istio.plugin_configs()
    assert len(configs) == 4, configs.keys()  # gateway + sidecar EnvoyFilters, two bootstrap ConfigMaps
    assert len(set(configs.values())) == 1, "the filter and its background service must read the same configuration"
    cfg = json.loads(next(iter(configs.values())))
    assert not any("api_key" in p for p in cfg["providers"]), "provider keys come from the Secret, never the config"


def test_the_oci_image_is_a_wasm_artifact_with_the_module():
    wasm = sm.WASM.read_bytes()
    files = oci.build(wasm)
    assert oci.build(wasm) == files, "reproducible"
    index = json.loads(files["index.json"])
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == oci.VERSION
    manifest_bytes = files["blobs/sha256/" + entry["digest"].split(":")[1]]
    assert hashlib.sha256(manifest_bytes).hexdigest() == entry["digest"].split(":")[1]
    manifest = json.loads(manifest_bytes)
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm"
    assert layer["digest"] == "sha256:" + hashlib.sha256(wasm).hexdigest() and layer["size"] == len(wasm)
    assert files["blobs/sha256/" + layer["digest"].split(":")[1]] == wasm
    assert manifest["config"]["mediaType"] == "application/vnd.module.wasm.config.v1+json"
    tar_path = oci.write(files, sm.ROOT / "target" / "oci-test")
    with tarfile.open(tar_path) as t:
        assert sorted(t.getnames()) == sorted(files)
        assert t.extractfile("index.json").read() == files["index.json"]


PROVIDER_ENV = {"OPENAI_API_KEY": sm.PROVIDER_KEYS["openai"], "ANTHROPIC_API_KEY": sm.PROVIDER_KEYS["anthropic"],
                "DEEPSEEK_API_KEY": sm.PROVIDER_KEYS["deepseek"]}


PLACES = {
    # file, the vhost and listener istiod would generate, the bootstrap ConfigMap's namespace
    "gateway": ("envoyfilter-gateway.yaml", "llm.example.com:80", "0.0.0.0_8080", "istio-system"),
    "sidecar": ("envoyfilter-sidecar.yaml", "llm.tollgate.internal:80", "0.0.0.0_80", "apps"),
}


@pytest.fixture(params=sorted(PLACES))
def istio_gateway(stack, tmp_path, request):
    """The gateway (or a sidecar) as Istio would configure it, on Istio 1.28's Envoy (1.36)."""
    file, vhost, listener, ns = PLACES[request.param]
    control = sm.Control(tmp_path, name="istio-control")
    base = istio.istio_gateway_config(sm.free_port(), sm.free_port(), stack.mock.port, control.port,
                                      vhost=vhost, listener=listener)
    (ef,) = istio.docs(file)
    cm = next(d for d in istio.docs("bootstrap.yaml") if d["metadata"]["namespace"] == ns)
    cfg = istio.with_filter_token(istio.translate(base, ef, cm, sm.WASM), sm.FILTER_TOKEN)
    e = sm.Envoy(cfg, tmp_path, concurrency=2, name="istio-gw", env=PROVIDER_ENV, binary=sm.envoy_bin("1.36.4"))
    e.wait_keys_loaded()  # until then an unknown key is 503 keys_loading, not 401
    yield e, control
    e.stop()
    control.stop()


def test_translated_config_runs_on_istio_1_28_envoy(istio_gateway):
    e, control = istio_gateway
    info = requests.get(f"http://127.0.0.1:{e.admin_port}/server_info", timeout=5).json()
    assert "/1.36.4/" in info["version"], info["version"]
    r = requests.post(e.url + "/v1/chat/completions", json={"model": "cheap", "messages": []},
                      headers={"authorization": "Bearer tg-not-a-key"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    # Istio lets WebSocket upgrades through to the filter: Codex's first try
    # (the Responses API over a WebSocket) gets 426, which it reads as "use HTTP".
    status, body = websocket_upgrade(e.url, "/v1/responses")
    assert status == 426 and json.loads(body)["error"]["code"] == "websocket_not_supported", (status, body)

    key = new_key(control, "mesh", key_id="mesh-app")
    auth = {"authorization": f"Bearer {key['key']}"}
    msgs = [{"role": "user", "content": "hello from the mesh"}]
    wait_until(lambda: requests.post(e.url + "/v1/chat/completions", json={"model": "cheap", "messages": msgs},
                                     headers=auth, timeout=10).status_code == 200, what="the key in the gateway")
    costs = []
    # routing on the body: three providers, each with its key from the Secret (Envoy's environment)
    for model, path, provider, sent_auth in [
            ("openai/gpt-5.4", "/v1/chat/completions", "openai", "Bearer " + sm.PROVIDER_KEYS["openai"]),
            ("cheap", "/chat/completions", "deepseek", "Bearer " + sm.PROVIDER_KEYS["deepseek"])]:
        r = requests.post(e.url + "/v1/chat/completions", json={"model": model, "messages": msgs}, headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        assert (r.headers["x-tollgate-provider"], r.headers["x-mock-path"], r.headers["x-mock-auth"]) == (provider, path, sent_auth)
        costs.append(int(r.headers["x-tollgate-cost-micros"]))
    r = requests.post(e.url + "/v1/messages", json={"model": "claude-sonnet-4-6", "max_tokens": 20, "messages": msgs},
                      headers={"x-api-key": key["key"]}, timeout=10)
    assert r.status_code == 200 and r.headers["x-mock-auth"] == sm.PROVIDER_KEYS["anthropic"]
    u = r.json()["usage"]
    assert int(r.headers["x-tollgate-cost-micros"]) == expected_cost("anthropic/claude-sonnet-4-6", u["input_tokens"],
                                                                      u["output_tokens"])
    costs.append(int(r.headers["x-tollgate-cost-micros"]))

    # usage reaches the control service through the bootstrap's background service
    wait_until(lambda: spend_of(control)["cost_micros"] >= sum(costs), timeout=15, what="usage shipped from the gateway")
    # budgets: a small limit stops the key
    control.api("PUT", "/v1/budgets/team/mesh", {"limit_micros": spend_of(control)["cost_micros"] + 200,
                                                 "period": "monthly"}, expect=200)
    time.sleep(2.5)
    statuses = [requests.post(e.url + "/v1/chat/completions", json={"model": "openai/gpt-5.4", "max_tokens": 50,
                                                                   "messages": msgs}, headers=auth, timeout=10).status_code
                for _ in range(10)]
    assert 429 in statuses, statuses


def spend_of(control: sm.Control) -> dict:
    return control.api("GET", "/v1/spend?scope_type=team&scope_id=mesh", expect=200)[1]
