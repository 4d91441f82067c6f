"""What Istio does with envoy/istio/, done here without a cluster.

`translate()` applies Tollgate's EnvoyFilter patches and its bootstrap
override to an Envoy configuration shaped like the one istiod sends an
ingress gateway (a listener on 8080, an HTTP connection manager with Istio's
usual filters ending in the router, a route configuration whose virtual host
is named "<host>:<port>", clusters named "outbound|<port>||<host>"), the way
istiod and the istio-agent would:

- EXTENSION_CONFIG ADD: kept by name, served by ECDS. Here the filter that
  refers to it by `config_discovery` gets it inline, and its remote code
  becomes a local file (what the istio-agent does after downloading it).
- HTTP_FILTER INSERT_BEFORE the router.
- HTTP_ROUTE INSERT_FIRST in the named virtual host (each patch in turn).
- sidecar.istio.io/bootstrapOverride: the ConfigMap's JSON merged into the
  bootstrap (lists appended), its remote code made local the same way.

Only the operations Tollgate's manifests use are implemented; anything else
is an error, so a manifest change that this emulation does not cover fails
the test instead of passing unchecked.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ISTIO = ROOT / "envoy" / "istio"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ISTIO / name).read_text()) if d]


def all_manifests() -> list[tuple[str, dict]]:
    out = []
    for p in sorted(ISTIO.rglob("*.yaml")):
        if p.name.endswith("-patch.yaml"):
            continue  # a patch, not a resource (checked applied to its target)
        out += [(str(p.relative_to(ISTIO)), d) for d in yaml.safe_load_all(p.read_text()) if d]
    return out


def plugin_configs() -> dict[str, str]:
    """Every copy of the plugin configuration text, by where it is."""
    out = {}
    for name, d in all_manifests():
        if d["kind"] == "EnvoyFilter":
            for i, p in enumerate(d["spec"]["configPatches"]):
                if p["applyTo"] == "EXTENSION_CONFIG":
                    out[f"{name}#{i}"] = p["patch"]["value"]["typed_config"]["config"]["configuration"]["value"]
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tollgate-bootstrap":
            bs = json.loads(d["data"]["custom_bootstrap.json"])
            out[f"{name}:{d['metadata']['namespace']}"] = bs["bootstrap_extensions"][0]["typed_config"]["config"]["configuration"]["value"]
    return out


def istio_gateway_config(listen_port: int, admin_port: int, upstream_port: int, control_port: int,
                         vhost: str = "llm.example.com:80", listener: str = "0.0.0.0_8080") -> dict:
    """An Envoy configuration shaped like istiod's for an ingress gateway with
    the Gateway/VirtualService of envoy/istio/gateway.yaml (or, with the
    sidecar's names, a sidecar's outbound listener on port 80 for
    llm.tollgate.internal), provider clusters pointed at `upstream_port` on
    loopback (plain HTTP: TLS origination is the DestinationRule's business,
    not Tollgate's)."""
    def cluster(name: str, port: int) -> dict:
        return {"name": name, "type": "STATIC", "connect_timeout": "5s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}

    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": f"outbound_{listener}",
        # istiod allows WebSocket upgrades on every HTTP listener (pilot's
        # listener builder sets upgrade_configs websocket): an upgrade
        # reaches the filter, which answers it (426).
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "route_config": {"name": listener, "virtual_hosts": [{
            "name": vhost, "domains": ["*"],
            "routes": [{"name": "no-provider", "match": {"prefix": "/"},
                        "direct_response": {"status": 404, "body": {"inline_string": '{"type":"error","error":{"type":"not_found_error","code":"unknown_endpoint","message":"Not routed by Tollgate."}}'}}}],
        }]},
        "http_filters": [
            {"name": "envoy.filters.http.cors",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            {"name": "envoy.filters.http.fault",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    }
    return {
        "node": {"id": "router~10.0.0.1~istio-ingressgateway-7d9f.istio-system~istio-system.svc.cluster.local",
                 "cluster": "istio-ingressgateway.istio-system"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{"name": listener,
                           "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                           "per_connection_buffer_limit_bytes": 16 << 20,
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": [cluster(f"outbound|80||{h}", upstream_port)
                         for h in ("api.openai.com", "api.anthropic.com", "api.deepseek.com")],
        },
        "_control_port": control_port,
    }


def _local_code(vm_config: dict, wasm: Path) -> None:
    code = vm_config["code"]
    if "remote" in code:
        assert code["remote"]["http_uri"]["uri"], "remote code needs a uri"
        vm_config["code"] = {"local": {"filename": str(wasm)}}


def translate(base: dict, envoyfilter: dict, bootstrap_cm: dict, wasm: Path) -> dict:
    cfg = copy.deepcopy(base)
    control_port = cfg.pop("_control_port")
    listener = cfg["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    extensions: dict[str, dict] = {}
    for patch in envoyfilter["spec"]["configPatches"]:
        op, value, match = patch["patch"]["operation"], copy.deepcopy(patch["patch"]["value"]), patch.get("match", {})
        if patch["applyTo"] == "EXTENSION_CONFIG" and op == "ADD":
            extensions[value["name"]] = value["typed_config"]
        elif patch["applyTo"] == "HTTP_FILTER" and op == "INSERT_BEFORE":
            sub = match["listener"]["filterChain"]["filter"]["subFilter"]["name"]
            filters = hcm["http_filters"]
            at = next(i for i, f in enumerate(filters) if f["name"] == sub)
            if "config_discovery" in value:
                assert WASM_TYPE in value["config_discovery"]["type_urls"]
                typed = copy.deepcopy(extensions[value["name"]])
                _local_code(typed["config"]["vm_config"], wasm)
                value = {"name": value["name"], "typed_config": typed}
            filters.insert(at, value)
        elif patch["applyTo"] == "HTTP_ROUTE" and op == "INSERT_FIRST":
            vhost_name = match["routeConfiguration"]["vhost"]["name"]
            vhost = next(v for v in hcm["route_config"]["virtual_hosts"] if v["name"] == vhost_name)
            vhost["routes"].insert(0, value)
        else:
            raise AssertionError(f"patch not emulated: {patch['applyTo']} {op}")
    override = json.loads(bootstrap_cm["data"]["custom_bootstrap.json"])
    for ext in override.get("bootstrap_extensions", []):
        _local_code(ext["typed_config"]["config"]["vm_config"], wasm)
        cfg.setdefault("bootstrap_extensions", []).append(ext)
    for c in override.get("static_resources", {}).get("clusters", []):
        c = copy.deepcopy(c)
        # The Service's DNS name, here: the control service on loopback.
        c["type"] = "STATIC"
        for ep in c["load_assignment"]["endpoints"]:
            for lb in ep["lb_endpoints"]:
                lb["endpoint"]["address"]["socket_address"].update({"address": "127.0.0.1", "port_value": control_port})
        cfg["static_resources"]["clusters"].append(c)
    return cfg


def with_filter_token(cfg: dict, token: str) -> dict:
    """The manifests carry a placeholder token: put the test control service's in every copy."""
    text = json.dumps(cfg).replace("replace-me-filter-token-0123456789", token)
    return json.loads(text)
