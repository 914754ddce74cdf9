"""OCI and Docker image records: media types, descriptors, platforms, manifests.

Everything fetched from a registry is hostile until proven otherwise, so the
parsers here accept only the shapes the OCI image spec and Docker schema 2
define and raise `errors.InvalidArgument` naming what was wrong. They never
trust a document to be what a server's Content-Type claims: a manifest whose
body is an index (or the other way round) is rejected.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from snapshotter import errors

# Manifests and configs are small; a bigger one is hostile (containerd uses the same bound).
MAX_MANIFEST_SIZE: Final = 4 << 20
MAX_CONFIG_SIZE: Final = 4 << 20

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER: Final = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD: Final = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_SCHEMA1_SIGNED: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA1: Final = "application/vnd.docker.distribution.manifest.v1+json"

MANIFEST_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES: Final = frozenset({OCI_CONFIG, DOCKER_CONFIG})
# Compression of each layer type we unpack: "gzip", "zstd" or "" (plain tar).
LAYER_COMPRESSION: Final[Mapping[str, str]] = {
    OCI_LAYER: "",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    DOCKER_LAYER: "",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_ZSTD: "zstd",
}
# What a registry is asked for when resolving a reference, best first.
MANIFEST_ACCEPT: Final = ", ".join(
    [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST, "*/*;q=0.1"]
)

_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")
_DIGEST_SHAPE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


def validate_digest(digest: object, *, what: str = "digest") -> str:
    """Return `digest` if it is a well-formed sha256 digest; raise InvalidArgument otherwise."""
    if isinstance(digest, str) and _SHA256.fullmatch(digest):
        return digest
    if isinstance(digest, str) and _DIGEST_SHAPE.fullmatch(digest) and ":" in digest:
        algorithm = digest.split(":", 1)[0]
        if algorithm != "sha256":
            raise errors.InvalidArgument(f"{what} {digest[:80]!r}: unsupported algorithm")
    raise errors.InvalidArgument(f"{what} {str(digest)[:80]!r} is not a sha256 digest")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    """An OCI platform; `variant` "" means unspecified."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)

    @classmethod
    def parse(cls, spec: str) -> Platform:
        """Parse "os/arch[/variant]" as written on command lines and in configs."""
        parts = spec.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise errors.InvalidArgument(f"platform {spec!r} is not os/arch[/variant]")
        arch, variant = normalize_arch(parts[1], parts[2] if len(parts) == 3 else "")
        return cls(os=parts[0].lower(), architecture=arch, variant=variant)


_ARCH_ALIASES: Final = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armv8l": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", ""),
    "i386": ("386", ""),
}


def normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """Map kernel/Debian architecture names to OCI ones, as containerd does."""
    arch = arch.lower()
    variant = variant.lower()
    if arch in _ARCH_ALIASES:
        arch, implied = _ARCH_ALIASES[arch]
        variant = variant or implied
    if arch == "arm64" and variant == "v8":
        variant = ""
    if arch == "amd64" and variant == "v1":
        variant = ""
    return arch, variant


def host_platform() -> Platform:
    """The platform of this machine, from `os.uname()` (linux/amd64 on our hosts)."""
    uname = os.uname()
    arch, variant = normalize_arch(uname.machine, "")
    return Platform(os=uname.sysname.lower(), architecture=arch, variant=variant)


def platform_rank(want: Platform, have: Platform) -> int | None:
    """How well `have` serves `want`: 0 is exact, higher is a worse fit, None is no fit.

    An ARM v7 host also runs v6 and v5 images; elsewhere variants must agree.
    """
    have_arch, have_variant = normalize_arch(have.architecture, have.variant)
    if have.os.lower() != want.os or have_arch != want.architecture:
        return None
    if have_variant == want.variant:
        return 0
    if want.architecture == "arm" and want.variant and have_variant:
        order = ["v8", "v7", "v6", "v5"]
        if want.variant in order and have_variant in order:
            step = order.index(have_variant) - order.index(want.variant)
            return step if step > 0 else None
    if not have_variant and want.architecture == "arm":
        return 9
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    """A content descriptor: what a blob is, its digest and exact size."""

    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def compression(self) -> str:
        """ "gzip", "zstd" or "" for a layer; raises InvalidArgument for a non-layer type."""
        try:
            return LAYER_COMPRESSION[self.media_type]
        except KeyError:
            raise errors.InvalidArgument(
                f"layer {self.digest} has unsupported media type {self.media_type!r}"
            ) from None

    def to_json(self) -> dict[str, Any]:
        """The descriptor as it appears in manifests and indexes."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest}
        out["size"] = self.size
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = _platform_json(self.platform)
        return out


def _platform_json(p: Platform) -> dict[str, str]:
    out = {"architecture": p.architecture, "os": p.os}
    if p.variant:
        out["variant"] = p.variant
    if p.os_version:
        out["os.version"] = p.os_version
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2): one config and its layers, base first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Index:
    """An image index / manifest list: one manifest per platform."""

    media_type: str
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageConfig:
    """The parts of an image config the runtime relies on, plus the whole parsed JSON."""

    raw: Mapping[str, Any]
    diff_ids: tuple[str, ...]
    platform: Platform


def _load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise errors.InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise errors.InvalidArgument(f"{what} is not a JSON object")
    return doc


def _str_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise errors.InvalidArgument(f"{what} must map strings to strings")
    return dict(value)


def parse_platform(value: object, what: str) -> Platform | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.InvalidArgument(f"{what}: platform is not an object")
    os_name, arch = value.get("os"), value.get("architecture")
    variant, os_version = value.get("variant", ""), value.get("os.version", "")
    fields = (os_name, arch, variant, os_version)
    if not all(isinstance(f, str) for f in fields) or not os_name or not arch:
        raise errors.InvalidArgument(f"{what}: platform needs string os and architecture")
    assert isinstance(os_name, str) and isinstance(arch, str)
    assert isinstance(variant, str) and isinstance(os_version, str)
    return Platform(os=os_name, architecture=arch, variant=variant, os_version=os_version)


def parse_descriptor(value: object, what: str) -> Descriptor:
    """Validate one descriptor object from a manifest or index."""
    if not isinstance(value, dict):
        raise errors.InvalidArgument(f"{what} is not an object")
    media_type, size, urls = value.get("mediaType"), value.get("size"), value.get("urls", [])
    if not isinstance(media_type, str) or not media_type:
        raise errors.InvalidArgument(f"{what} has no mediaType")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise errors.InvalidArgument(f"{what} has an invalid size {size!r}")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise errors.InvalidArgument(f"{what} has invalid urls")
    return Descriptor(
        media_type=media_type,
        digest=validate_digest(value.get("digest"), what=f"{what} digest"),
        size=size,
        urls=tuple(urls),
        platform=parse_platform(value.get("platform"), what),
        annotations=_str_map(value.get("annotations"), f"{what} annotations"),
    )


def detect_media_type(data: bytes, declared: str) -> str:
    """The media type to validate `data` as.

    `declared` is the descriptor's or the Content-Type's type. A registry may
    answer with a generic Content-Type; then the document's own `mediaType`
    field, else its shape, decides — the parsers still check it thoroughly.
    """
    declared = declared.split(";", 1)[0].strip().lower()
    if declared in MANIFEST_TYPES or declared in INDEX_TYPES:
        return declared
    if declared in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise errors.InvalidArgument("Docker schema 1 manifests are not supported")
    doc = _load_json(data, "manifest")
    inner = doc.get("mediaType")
    if isinstance(inner, str) and inner:
        return inner
    if "manifests" in doc:
        return OCI_INDEX
    return OCI_MANIFEST


def _check_header(doc: Mapping[str, Any], media_type: str, what: str) -> None:
    if doc.get("schemaVersion") != 2:
        raise errors.InvalidArgument(f"{what}: schemaVersion must be 2")
    inner = doc.get("mediaType")
    if inner is not None and inner != media_type:
        raise errors.InvalidArgument(f"{what}: declared as {media_type} but says it is {inner!r}")
    if media_type == DOCKER_MANIFEST and inner is None:
        raise errors.InvalidArgument(f"{what}: Docker schema 2 manifest without mediaType")


def parse_manifest(data: bytes, media_type: str, *, what: str = "manifest") -> Manifest:
    """Validate an image manifest; `media_type` is what the descriptor or server says it is."""
    if media_type not in MANIFEST_TYPES:
        raise errors.InvalidArgument(f"{what}: {media_type!r} is not an image manifest type")
    doc = _load_json(data, what)
    _check_header(doc, media_type, what)
    if "manifests" in doc:
        raise errors.InvalidArgument(f"{what}: declared as {media_type} but is an index")
    config = parse_descriptor(doc.get("config"), f"{what} config")
    if config.media_type not in CONFIG_TYPES:
        raise errors.InvalidArgument(
            f"{what}: config type {config.media_type!r} is not a container image"
        )
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise errors.InvalidArgument(f"{what}: layers must be a list")
    parsed = tuple(parse_layer(item, f"{what} layer {i}") for i, item in enumerate(layers))
    annotations = _str_map(doc.get("annotations"), f"{what} annotations")
    return Manifest(media_type=media_type, config=config, layers=parsed, annotations=annotations)


def parse_layer(value: object, what: str) -> Descriptor:
    """A layer descriptor we can unpack; foreign and non-distributable layers are refused."""
    desc = parse_descriptor(value, what)
    if "nondistributable" in desc.media_type or "foreign" in desc.media_type:
        raise errors.InvalidArgument(
            f"{what} {desc.digest}: foreign/non-distributable layers are not supported"
        )
    if desc.media_type not in LAYER_COMPRESSION:
        raise errors.InvalidArgument(
            f"{what} {desc.digest}: unsupported layer media type {desc.media_type!r}"
        )
    return desc


def parse_index(data: bytes, media_type: str, *, what: str = "index") -> Index:
    """Validate an image index or Docker manifest list."""
    if media_type not in INDEX_TYPES:
        raise errors.InvalidArgument(f"{what}: {media_type!r} is not an index type")
    doc = _load_json(data, what)
    _check_header(doc, media_type, what)
    if "layers" in doc or "config" in doc:
        raise errors.InvalidArgument(f"{what}: declared as {media_type} but is a manifest")
    items = doc.get("manifests")
    if not isinstance(items, list):
        raise errors.InvalidArgument(f"{what}: manifests must be a list")
    manifests = tuple(parse_descriptor(m, f"{what} entry {i}") for i, m in enumerate(items))
    return Index(media_type=media_type, manifests=manifests)


def parse_config(data: bytes, *, layers: int, what: str = "image config") -> ImageConfig:
    """Validate an image config: rootfs.diff_ids must list exactly one id per layer."""
    doc = _load_json(data, what)
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise errors.InvalidArgument(f"{what}: rootfs.type must be 'layers'")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise errors.InvalidArgument(f"{what}: rootfs.diff_ids must be a list")
    ids = tuple(validate_digest(d, what=f"{what} diff_id") for d in diff_ids)
    if len(ids) != layers:
        raise errors.InvalidArgument(
            f"{what}: {len(ids)} diff_ids for {layers} layers in the manifest"
        )
    for key in ("config", "history"):
        if doc.get(key) is not None and not isinstance(doc[key], dict | list):
            raise errors.InvalidArgument(f"{what}: {key} has the wrong type")
    platform = parse_platform(
        {"os": doc.get("os"), "architecture": doc.get("architecture")}
        | ({"variant": doc["variant"]} if "variant" in doc else {}),
        what,
    )
    assert platform is not None
    return ImageConfig(raw=doc, diff_ids=ids, platform=platform)


def select_platform(index: Index, want: Platform, *, what: str) -> Descriptor:
    """The entry of `index` that best fits `want`; the first among equals wins.

    Raises NotFound naming the platforms the index offers when none fits.
    """
    ranked: list[tuple[int, int, Descriptor]] = []
    for pos, desc in enumerate(index.manifests):
        rank = None if desc.platform is None else platform_rank(want, desc.platform)
        if rank is not None and (desc.media_type in MANIFEST_TYPES | INDEX_TYPES):
            ranked.append((rank, pos, desc))
    if ranked:
        return min(ranked, key=lambda item: item[:2])[2]
    offered = sorted({str(d.platform) for d in index.manifests if d.platform is not None})
    raise errors.NotFound(
        f"{what}: no manifest for platform {want}; available: {', '.join(offered) or 'none'}"
    )
