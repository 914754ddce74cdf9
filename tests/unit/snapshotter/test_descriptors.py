"""Manifest, index and config validation; platform selection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from snapshotter import descriptors as d
from snapshotter import errors

H = "sha256:" + "1" * 64
H2 = "sha256:" + "2" * 64


def desc(media_type: str, digest: str = H, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def manifest(**overrides: Any) -> dict[str, Any]:
    doc = {
        "schemaVersion": 2,
        "mediaType": d.OCI_MANIFEST,
        "config": desc(d.OCI_CONFIG),
        "layers": [desc(d.OCI_LAYER_GZIP, H2, 100)],
    }
    return doc | overrides


def index(*entries: dict[str, Any], media_type: str = d.OCI_INDEX) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)}
    return json.dumps(doc).encode()


def plat(os: str, arch: str, variant: str = "") -> dict[str, str]:
    return {"os": os, "architecture": arch} | ({"variant": variant} if variant else {})


def enc(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_parse_oci_manifest() -> None:
    m = d.parse_manifest(enc(manifest()), d.OCI_MANIFEST)
    assert m.config.digest == H
    assert [(x.digest, x.size, x.compression) for x in m.layers] == [(H2, 100, "gzip")]


@pytest.mark.parametrize(
    ("layer_type", "compression"),
    [
        (d.OCI_LAYER, ""),
        (d.OCI_LAYER_GZIP, "gzip"),
        (d.OCI_LAYER_ZSTD, "zstd"),
        (d.DOCKER_LAYER_GZIP, "gzip"),
        (d.DOCKER_LAYER_ZSTD, "zstd"),
        (d.DOCKER_LAYER, ""),
    ],
)
def test_layer_types(layer_type: str, compression: str) -> None:
    doc = manifest(layers=[desc(layer_type)])
    assert d.parse_manifest(enc(doc), d.OCI_MANIFEST).layers[0].compression == compression


def test_docker_schema2_manifest_needs_its_media_type_field() -> None:
    doc = manifest(mediaType=d.DOCKER_MANIFEST, config=desc(d.DOCKER_CONFIG))
    assert d.parse_manifest(enc(doc), d.DOCKER_MANIFEST).media_type == d.DOCKER_MANIFEST
    del doc["mediaType"]
    with pytest.raises(errors.InvalidArgument, match="without mediaType"):
        d.parse_manifest(enc(doc), d.DOCKER_MANIFEST)


BAD_MANIFESTS: list[tuple[str, bytes, str]] = [
    ("not json", b"{nope", "not valid JSON"),
    ("a list", b"[]", "not a JSON object"),
    ("schema 1", enc(manifest(schemaVersion=1)), "schemaVersion"),
    ("type mismatch", enc(manifest(mediaType=d.DOCKER_MANIFEST)), "says it is"),
    ("index body", enc(manifest(manifests=[])), "is an index"),
    ("no config", enc({"schemaVersion": 2, "layers": []}), "config"),
    ("artifact", enc(manifest(config=desc("application/vnd.cncf.helm.config"))), "not a container"),
    ("layers not list", enc(manifest(layers={})), "layers must be a list"),
    (
        "foreign",
        enc(manifest(layers=[desc("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")])),
        "non-distributable",
    ),
    (
        "nondistributable",
        enc(
            manifest(layers=[desc("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")])
        ),
        "non-distributable",
    ),
    ("unknown layer", enc(manifest(layers=[desc("application/x-tar+lz4")])), "unsupported layer"),
    ("bad digest", enc(manifest(layers=[desc(d.OCI_LAYER, "sha256:xyz")])), "not a sha256"),
    (
        "other algorithm",
        enc(manifest(layers=[desc(d.OCI_LAYER, "sha512:" + "a" * 128)])),
        "unsupported algorithm",
    ),
    ("negative size", enc(manifest(layers=[desc(d.OCI_LAYER, H, -1)])), "invalid size"),
    ("bool size", enc(manifest(layers=[desc(d.OCI_LAYER, H, True)])), "invalid size"),
    ("string size", enc(manifest(layers=[desc(d.OCI_LAYER, H) | {"size": "10"}])), "invalid size"),
    ("annotations", enc(manifest(annotations={"a": 1})), "annotations"),
    ("deep json", b"[" * 100000 + b"]" * 100000, "JSON"),
]


@pytest.mark.parametrize(
    ("name", "data", "message"), BAD_MANIFESTS, ids=[b[0] for b in BAD_MANIFESTS]
)
def test_bad_manifests(name: str, data: bytes, message: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=message):
        d.parse_manifest(data, d.OCI_MANIFEST)


def test_manifest_parser_refuses_index_media_type() -> None:
    with pytest.raises(errors.InvalidArgument, match="not an image manifest"):
        d.parse_manifest(enc(manifest()), d.OCI_INDEX)


def test_parse_index_and_reject_manifest_body() -> None:
    data = index(desc(d.OCI_MANIFEST, H, 5, platform=plat("linux", "amd64")))
    parsed = d.parse_index(data, d.OCI_INDEX)
    assert parsed.manifests[0].platform == d.Platform(os="linux", architecture="amd64")
    with pytest.raises(errors.InvalidArgument, match="is a manifest"):
        d.parse_index(enc(manifest(mediaType=d.OCI_INDEX)), d.OCI_INDEX)
    with pytest.raises(errors.InvalidArgument, match="platform"):
        d.parse_index(index(desc(d.OCI_MANIFEST, platform={"os": "linux"})), d.OCI_INDEX)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (d.OCI_MANIFEST, enc(manifest()), d.OCI_MANIFEST),
        (f"{d.DOCKER_MANIFEST_LIST}; charset=utf-8", index(), d.DOCKER_MANIFEST_LIST),
        ("application/json", enc(manifest(mediaType=d.DOCKER_MANIFEST)), d.DOCKER_MANIFEST),
        ("text/plain", index(), d.OCI_INDEX),
        ("", enc({"schemaVersion": 2, "manifests": []}), d.OCI_INDEX),
        ("", enc({"schemaVersion": 2, "config": {}, "layers": []}), d.OCI_MANIFEST),
    ],
)
def test_detect_media_type(content_type: str, body: bytes, expected: str) -> None:
    assert d.detect_media_type(body, content_type) == expected


def test_detect_refuses_schema1() -> None:
    with pytest.raises(errors.InvalidArgument, match="schema 1"):
        d.detect_media_type(b"{}", d.DOCKER_SCHEMA1_SIGNED)


def config(diff_ids: list[str], **extra: Any) -> bytes:
    doc = {
        "os": "linux",
        "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return enc(doc | extra)


def test_parse_config() -> None:
    parsed = d.parse_config(config([H, H2], variant="v1"), layers=2)
    assert parsed.diff_ids == (H, H2)
    assert parsed.platform.architecture == "amd64"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (config([H]), "1 diff_ids for 2 layers"),
        (config([H, "sha256:zz"]), "not a sha256"),
        (enc({"os": "linux", "architecture": "amd64"}), "rootfs.type"),
        (enc({"rootfs": {"type": "layers", "diff_ids": [H, H]}}), "os and architecture"),
        (config([H, H], config="sh"), "config has the wrong type"),
    ],
)
def test_bad_configs(data: bytes, message: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=message):
        d.parse_config(data, layers=2)


AMD64 = d.Platform(os="linux", architecture="amd64")


def test_select_platform_skips_other_arches_and_keeps_index_order() -> None:
    data = index(
        desc(d.OCI_MANIFEST, "sha256:" + "3" * 64, platform=plat("linux", "arm64")),
        desc(d.OCI_MANIFEST, "sha256:" + "4" * 64, platform=plat("unknown", "unknown")),
        desc(d.OCI_MANIFEST, "sha256:" + "5" * 64, platform=plat("linux", "amd64")),
        desc(d.OCI_MANIFEST, "sha256:" + "6" * 64, platform=plat("linux", "amd64")),
    )
    chosen = d.select_platform(d.parse_index(data, d.OCI_INDEX), AMD64, what="x")
    assert chosen.digest == "sha256:" + "5" * 64


def test_select_platform_none_matches_lists_what_is_there() -> None:
    data = index(
        desc(d.OCI_MANIFEST, platform=plat("linux", "arm64")),
        desc(d.OCI_MANIFEST, platform=plat("linux", "arm", "v7")),
        desc(d.OCI_MANIFEST, platform=plat("windows", "amd64")),
    )
    with pytest.raises(
        errors.NotFound, match=r"linux/amd64; available: linux/arm/v7, linux/arm64, windows/amd64"
    ):
        d.select_platform(d.parse_index(data, d.OCI_INDEX), AMD64, what="image x")


def test_arm_variants_rank_by_closeness() -> None:
    want = d.Platform(os="linux", architecture="arm", variant="v7")
    assert d.platform_rank(want, d.Platform(os="linux", architecture="arm", variant="v7")) == 0
    assert d.platform_rank(want, d.Platform(os="linux", architecture="arm", variant="v6")) == 1
    assert d.platform_rank(want, d.Platform(os="linux", architecture="arm", variant="v8")) is None
    arm64 = d.Platform(os="linux", architecture="arm64")
    assert d.platform_rank(arm64, d.Platform(os="linux", architecture="arm64", variant="v8")) == 0
    assert d.platform_rank(AMD64, d.Platform(os="linux", architecture="x86_64")) == 0


def test_platform_parse_and_host() -> None:
    assert d.Platform.parse("linux/aarch64") == d.Platform(os="linux", architecture="arm64")
    assert str(d.Platform.parse("linux/arm/v7")) == "linux/arm/v7"
    with pytest.raises(errors.InvalidArgument):
        d.Platform.parse("linux")
    assert d.host_platform().os == "linux"


def test_descriptor_to_json_round_trips() -> None:
    raw = desc(d.OCI_MANIFEST, H, 7, platform=plat("linux", "arm", "v7"), annotations={"a": "b"})
    assert d.parse_descriptor(raw, "x").to_json() == raw


def test_validate_digest() -> None:
    assert d.validate_digest(H) == H
    for bad in (None, 5, "sha256:" + "1" * 63, "../../etc", "sha256:../" + "1" * 61):
        with pytest.raises(errors.InvalidArgument):
            d.validate_digest(bad)
