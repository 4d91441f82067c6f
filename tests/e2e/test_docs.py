"""Docs stay true: every route the control service serves is in the OpenAPI
document, and every filter configuration field is in docs/configuration.md."""
import re

import yaml

import stack as sm


def test_openapi_lists_every_route():
    src = (sm.ROOT / "control-service" / "src" / "api" / "mod.rs").read_text()
    routes = set(re.findall(r'\.route\("([^"]+)"', src))
    spec = yaml.safe_load((sm.ROOT / "docs" / "openapi.yaml").read_text())
    assert routes == set(spec["paths"]), routes ^ set(spec["paths"])


def test_configuration_doc_names_every_field():
    src = (sm.ROOT / "filter" / "src" / "config.rs").read_text()
    doc = (sm.ROOT / "docs" / "configuration.md").read_text()
    fields = set()
    for struct in re.findall(r"struct Raw\w+ \{(.*?)\n\}", src, re.S):
        fields |= set(re.findall(r"^\s+(\w+): ", struct, re.M))
    missing = [f for f in sorted(fields) if f"`{f}`" not in doc]
    assert not missing, missing
