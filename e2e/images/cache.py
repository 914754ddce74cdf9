"""Built catalogs kept between runs as OCI image layouts, keyed by everything they are made of.

    <cache>/images/<key>/oci-layout, index.json, blobs/sha256/...

`index.json` has one entry per pushed reference, annotated with
`org.opencontainers.image.ref.name = <repository>:<tag>`. The key hashes the builder's source
and every input file (packages, compiled helpers, host libraries), so an upgraded package or
an edited builder makes a new entry instead of serving a stale one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import e2e.images
import tests.support.oci_builder
from e2e.images import elf, rootfs
from e2e.images.catalog import Inputs, Published
from snapshotter import descriptors as d
from tests.support.oci_builder import Image, Index, Layer, canonical_json

REF_NAME: Final = "org.opencontainers.image.ref.name"


def cache_key(inputs: Inputs) -> str:
    """A digest of the builder's source and of every file that goes into the images."""
    digest = hashlib.sha256()
    for path in sorted(_key_files(inputs)):
        digest.update(f"{path}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:32]


def _key_files(inputs: Inputs) -> set[Path]:
    sources = set(Path(e2e.images.__file__).parent.glob("*.py"))
    sources.add(Path(tests.support.oci_builder.__file__))
    nginx = inputs.nginx_root / "usr/sbin/nginx"
    binaries = [inputs.busybox, nginx, *(t.host_file for t in rootfs.HOST_TOOLS)]
    libs = {lib.host_file for lib in elf.library_closure(binaries)}
    plain = {inputs.pause, inputs.nonewprivs, inputs.static_busybox}
    mime = inputs.nginx_common_root / "etc/nginx/mime.types"
    return sources | libs | plain | set(binaries) | {mime}


def save(catalog: Iterable[Published], dest: Path) -> None:
    """Write `catalog` as an OCI layout at `dest` (atomically: a crash leaves no half entry)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".save-"))
    try:
        _write_layout(list(catalog), scratch)
        scratch.rename(dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_layout(catalog: list[Published], root: Path) -> None:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    entries = []
    for pub in catalog:
        for digest, data in _blobs(pub.target).items():
            (blobs / digest.removeprefix("sha256:")).write_bytes(data)
        desc = _descriptor(pub.target)
        entries += [desc | {"annotations": {REF_NAME: f"{pub.repository}:{t}"}} for t in pub.tags]
    (root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": d.OCI_INDEX, "manifests": entries}
    (root / "index.json").write_bytes(canonical_json(index))


def _blobs(target: Image | Index) -> dict[str, bytes]:
    images = target.images if isinstance(target, Index) else (target,)
    out = {target.digest: target.data if isinstance(target, Index) else target.manifest}
    for image in images:
        out[image.digest] = image.manifest
        out.update(image.blobs())
    return out


def _descriptor(target: Image | Index) -> dict[str, Any]:
    size = len(target.data) if isinstance(target, Index) else len(target.manifest)
    return {"mediaType": target.media_type, "digest": target.digest, "size": size}


def load(root: Path) -> list[Published]:
    """The catalog saved at `root`, in saved order, tags of one target grouped together."""
    index = json.loads((root / "index.json").read_bytes())
    grouped: dict[tuple[str, str], list[str]] = {}
    media: dict[str, str] = {}
    for entry in index["manifests"]:
        repository, _, tag = entry["annotations"][REF_NAME].rpartition(":")
        grouped.setdefault((repository, entry["digest"]), []).append(tag)
        media[entry["digest"]] = entry["mediaType"]
    reader = _BlobReader(root / "blobs" / "sha256")
    return [
        Published(repository=repo, tags=tuple(tags), target=reader.target(digest, media[digest]))
        for (repo, digest), tags in grouped.items()
    ]


class _BlobReader:
    """Rebuilds oci_builder records from a layout's blobs."""

    def __init__(self, blobs: Path) -> None:
        self._blobs = blobs

    def read(self, digest: str) -> bytes:
        return (self._blobs / digest.removeprefix("sha256:")).read_bytes()

    def target(self, digest: str, media_type: str) -> Image | Index:
        if media_type in (d.OCI_INDEX, d.DOCKER_MANIFEST_LIST):
            data = self.read(digest)
            entries = json.loads(data)["manifests"]
            images = [self.image(m["digest"], m["mediaType"]) for m in entries]
            return Index(data=data, media_type=media_type, images=tuple(images))
        return self.image(digest, media_type)

    def image(self, digest: str, media_type: str) -> Image:
        manifest = self.read(digest)
        doc = json.loads(manifest)
        config = self.read(doc["config"]["digest"])
        config_doc = json.loads(config)
        diff_ids = config_doc["rootfs"]["diff_ids"]
        pairs = zip(doc["layers"], diff_ids, strict=True)
        layers = [self.layer(desc, diff_id) for desc, diff_id in pairs]
        platform = d.Platform(
            os=config_doc["os"],
            architecture=config_doc["architecture"],
            variant=config_doc.get("variant", ""),
        )
        return Image(
            manifest=manifest,
            media_type=media_type,
            config=config,
            layers=tuple(layers),
            platform=platform,
        )

    def layer(self, desc: dict[str, Any], diff_id: str) -> Layer:
        data = self.read(desc["digest"])
        return Layer(
            media_type=desc["mediaType"],
            data=data,
            digest=desc["digest"],
            size=desc["size"],
            diff_id=diff_id,
        )
