#!/usr/bin/env python3
"""`make oci`: the filter as an OCI image, the way Istio fetches Wasm modules.

Writes target/oci/tollgate-filter.oci.tar, an OCI image layout (oci-layout,
index.json, blobs/sha256/...) with one layer of media type
application/vnd.module.wasm.content.layer.v1+wasm (the Wasm OCI artifact
format Istio's agent reads), built offline and byte-for-byte reproducible.
Push it with any registry tool, e.g.

    skopeo copy oci-archive:target/oci/tollgate-filter.oci.tar docker://REGISTRY/tollgate/filter:0.1.0
    oras cp --from-oci-layout target/oci/layout:0.1.0 REGISTRY/tollgate/filter:0.1.0

and prints the module's sha256 (the EnvoyFilter's and bootstrap's `sha256`).
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WASM = ROOT / "target" / "wasm32-unknown-unknown" / "release" / "tollgate_filter.wasm"
OUT = ROOT / "target" / "oci"
VERSION = "0.1.0"

LAYER_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
CONFIG_TYPE = "application/vnd.module.wasm.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build(wasm: bytes) -> dict[str, bytes]:
    """The files of the image layout, by path."""
    config = canonical({"created": "1970-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip1"})
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": digest(wasm), "size": len(wasm),
                    "annotations": {"org.opencontainers.image.title": "plugin.wasm"}}],
        "annotations": {"org.opencontainers.image.title": "tollgate-filter",
                        "org.opencontainers.image.version": VERSION},
    })
    index = canonical({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [{"mediaType": MANIFEST_TYPE, "digest": digest(manifest), "size": len(manifest),
                       "annotations": {"org.opencontainers.image.ref.name": VERSION}}],
    })
    files = {"oci-layout": canonical({"imageLayoutVersion": "1.0.0"}), "index.json": index}
    for blob in (config, manifest, wasm):
        files["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    return files


def write(files: dict[str, bytes], out: Path) -> Path:
    layout = out / "layout"
    for path, data in files.items():
        p = layout / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    tar_path = out / "tollgate-filter.oci.tar"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode, info.uid, info.gid = len(files[path]), 0, 0o644, 0, 0
            tar.addfile(info, io.BytesIO(files[path]))
    tar_path.write_bytes(buf.getvalue())
    return tar_path


def main() -> int:
    if not WASM.exists():
        print(f"missing {WASM}: run 'make build-wasm'", file=sys.stderr)
        return 1
    wasm = WASM.read_bytes()
    tar_path = write(build(wasm), OUT)
    sha = hashlib.sha256(wasm).hexdigest()
    print(f"OCI image: {tar_path.relative_to(ROOT)} (layout in {(OUT / 'layout').relative_to(ROOT)}, tag {VERSION})")
    print(f"module sha256: {sha}")
    print("push:   skopeo copy oci-archive:target/oci/tollgate-filter.oci.tar docker://REGISTRY/tollgate/filter:" + VERSION)
    print(f"pin:    sed -i 's/\"0\\{{64\\}}\"/\"{sha}\"/' envoy/istio/envoyfilter-*.yaml envoy/istio/bootstrap.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
