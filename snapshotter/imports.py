"""Offline import: an OCI image layout tar, or a `docker save` tar, into the content store.

The archive is hostile like any layer. Its member names are only ever keys
to look blobs up by — nothing is extracted by name — and only regular-file
members count. Every blob goes through a verified ingest (size and sha256);
documents are bounded in size and parsed by the same strict parsers as a
pull. A compressed archive (gzip, zstd) is first decompressed into
`scratch`, bounded by the unpack byte limit. Layers are unpacked afterwards
by the image store, with the same checks as pulled ones.

Blocking: run it in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final, TypeGuard

from snapshotter import errors
from snapshotter.api import LayerBlob, ResolvedImage
from snapshotter.content import ContentStore
from snapshotter.descriptors import (
    INDEX_TYPES,
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    detect_media_type,
    host_platform,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
)
from snapshotter.reference import parse
from snapshotter.streams import CHUNK, CODEC_ERRORS, HashingReader, decompressed
from snapshotter.unpack import DEFAULT_LIMITS, BoundedTarInfo

MAX_MEMBERS: Final = 100_000
_NAME_ANNOTATIONS: Final = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
_MEDIA_BY_COMPRESSION: Final = {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "": OCI_LAYER}


def load_archive(
    path: Path, content: ContentStore, scratch: Path, *, max_bytes: int = DEFAULT_LIMITS.max_bytes
) -> list[ResolvedImage]:
    """Ingest the blobs of every image in the archive at `path`; describe each image."""
    with _open_tar(path, scratch, max_bytes) as archive:
        # Docker 25+ writes both forms; only manifest.json carries its RepoTags.
        if "manifest.json" in archive.members:
            return _DockerSave(archive, content).images()
        if "index.json" in archive.members and "oci-layout" in archive.members:
            return _OciLayout(archive, content).images()
    raise errors.InvalidArgument(f"archive {path}: neither an OCI image layout nor a docker save")


class _Archive:
    """A seekable tar with its regular-file members by normalised name."""

    def __init__(self, tf: tarfile.TarFile, path: Path) -> None:
        self.tf = tf
        self.path = path
        self.members: dict[str, tarfile.TarInfo] = {}
        for i, m in enumerate(tf):
            if i >= MAX_MEMBERS:
                raise errors.InvalidArgument(f"archive {path}: more than {MAX_MEMBERS} members")
            if not m.isreg():
                continue
            name = "/".join(p for p in m.name.split("/") if p not in ("", "."))
            if name in self.members:
                raise errors.InvalidArgument(f"archive {path}: member {name!r} appears twice")
            self.members[name] = m

    def member(self, name: str) -> tarfile.TarInfo:
        found = self.members.get(name.removeprefix("./"))
        if found is None:
            raise errors.InvalidArgument(f"archive {self.path}: no member {name[:200]!r}")
        return found

    def stream(self, m: tarfile.TarInfo) -> IO[bytes]:
        f = self.tf.extractfile(m)
        assert f is not None  # regular members always have data
        return f

    def read(self, name: str, limit: int) -> bytes:
        m = self.member(name)
        if m.size > limit:
            raise errors.InvalidArgument(f"archive {self.path}: {name} is {m.size} bytes")
        return self.stream(m).read()


@contextlib.contextmanager
def _open_tar(path: Path, scratch: Path, max_bytes: int) -> Iterator[_Archive]:
    try:
        with open(path, "rb") as raw:
            tar_path = _plain_tar(raw, path, scratch, max_bytes)
        with tarfile.open(tar_path, mode="r:", tarinfo=BoundedTarInfo) as tf:
            yield _Archive(tf, path)
    except FileNotFoundError:
        raise errors.NotFound(f"archive {path} not found") from None
    except (tarfile.TarError, *CODEC_ERRORS) as exc:
        raise errors.InvalidArgument(f"archive {path}: not a readable tar: {exc}") from None


def _plain_tar(raw: IO[bytes], path: Path, scratch: Path, max_bytes: int) -> Path:
    """`path` itself if it is an uncompressed tar, else a decompressed copy in `scratch`."""
    head = raw.read(4)
    raw.seek(0)
    if not (head.startswith(b"\x1f\x8b") or head == b"\x28\xb5\x2f\xfd"):
        return path
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / "archive.tar"
    src = HashingReader(decompressed(raw, ""), limit=max_bytes, what=f"archive {path}")
    with open(out, "wb") as f:
        while chunk := src.read(CHUNK):
            f.write(chunk)
    return out


def _ingest(archive: _Archive, m: tarfile.TarInfo, content: ContentStore, digest: str) -> None:
    """Copy member `m` into the content store as `digest` (verified by the ingest)."""
    if content.exists(digest):
        if content.size(digest) != m.size:
            raise errors.InvalidArgument(f"blob {digest}: stored size differs from the archive's")
        return
    with content.ingest(digest, m.size) as ingest:
        ingest.truncate()
        src = archive.stream(m)
        while chunk := src.read(CHUNK):
            ingest.write(chunk)
        ingest.commit()


def _sha256_of(stream: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


class _OciLayout:
    """index.json → (index →) manifest → config + layers, blobs under blobs/sha256/."""

    def __init__(self, archive: _Archive, content: ContentStore) -> None:
        self._a = archive
        self._content = content

    def images(self) -> list[ResolvedImage]:
        data = self._a.read("index.json", MAX_MANIFEST_SIZE)
        index = parse_index(data, detect_media_type(data, ""), what="archive index.json")
        return [self._image(desc) for desc in index.manifests]

    def _blob(self, desc: Descriptor, limit: int | None = None) -> bytes | None:
        m = self._a.member(f"blobs/sha256/{desc.digest.removeprefix('sha256:')}")
        if m.size != desc.size:
            raise errors.InvalidArgument(
                f"blob {desc.digest}: {m.size} bytes in the archive, descriptor says {desc.size}"
            )
        _ingest(self._a, m, self._content, desc.digest)
        return None if limit is None else self._content.read(desc.digest, limit)

    def _image(self, top: Descriptor) -> ResolvedImage:
        data = self._blob(top, MAX_MANIFEST_SIZE)
        assert data is not None
        blobs, desc = [top.digest], top
        if top.media_type in INDEX_TYPES:
            index = parse_index(data, top.media_type, what=f"index {top.digest}")
            desc = select_platform(index, host_platform(), what=f"archive index {top.digest}")
            data = self._blob(desc, MAX_MANIFEST_SIZE)
            assert data is not None
            blobs.append(desc.digest)
        manifest = parse_manifest(data, desc.media_type, what=f"manifest {desc.digest}")
        raw_config = self._blob(manifest.config, MAX_CONFIG_SIZE)
        assert raw_config is not None
        config = parse_config(raw_config, layers=len(manifest.layers))
        for layer in manifest.layers:
            self._blob(layer)
        names = _names(top.annotations)
        return ResolvedImage(
            repo_tags=tuple(names),
            repo_digests=tuple(sorted({n.rsplit(":", 1)[0] + "@" + top.digest for n in names})),
            config_digest=manifest.config.digest,
            config=dict(config.raw),
            layers=tuple(_layer(x) for x in manifest.layers),
            diff_ids=config.diff_ids,
            blobs=(*blobs, manifest.config.digest, *(x.digest for x in manifest.layers)),
            size=desc.size + manifest.config.size + sum(x.size for x in manifest.layers),
        )


def _layer(desc: Descriptor) -> LayerBlob:
    return LayerBlob(media_type=desc.media_type, digest=desc.digest, size=desc.size)


def _names(annotations: Mapping[str, str]) -> list[str]:
    """Tag refs ("name:tag") an index entry names; a bare tag ("latest") names no repository."""
    for key in _NAME_ANNOTATIONS:
        value = annotations.get(key, "")
        if "/" in value or ":" in value:
            with contextlib.suppress(errors.InvalidArgument):
                ref = parse(value)
                if ref.digest is None:
                    return [f"{ref.name}:{ref.tag}"]
    return []


class _DockerSave:
    """manifest.json: [{Config, RepoTags, Layers}] with layers as (usually plain) tars."""

    def __init__(self, archive: _Archive, content: ContentStore) -> None:
        self._a = archive
        self._content = content

    def images(self) -> list[ResolvedImage]:
        doc = _json(self._a.read("manifest.json", MAX_MANIFEST_SIZE), "manifest.json")
        if not isinstance(doc, list):
            raise errors.InvalidArgument("archive manifest.json is not a list")
        return [self._image(i, entry) for i, entry in enumerate(doc)]

    def _image(self, i: int, entry: Any) -> ResolvedImage:
        what = f"archive manifest.json entry {i}"
        if not isinstance(entry, dict):
            raise errors.InvalidArgument(f"{what} is not an object")
        config_name, tags, layer_names = (entry.get(k) for k in ("Config", "RepoTags", "Layers"))
        if not isinstance(config_name, str) or not _str_list(layer_names):
            raise errors.InvalidArgument(f"{what}: Config and Layers are required")
        raw_config = self._a.read(config_name, MAX_CONFIG_SIZE)
        config = parse_config(raw_config, layers=len(layer_names), what=f"{what} config")
        config_digest = self._content.write_blob(raw_config)
        layers = tuple(self._layer(name) for name in layer_names)
        manifest = _manifest_json(config_digest, len(raw_config), layers)
        manifest_digest = self._content.write_blob(manifest)
        return ResolvedImage(
            repo_tags=tuple(_tags(tags, what)),
            repo_digests=(),
            config_digest=config_digest,
            config=dict(config.raw),
            layers=layers,
            diff_ids=config.diff_ids,
            blobs=(manifest_digest, config_digest, *(x.digest for x in layers)),
            size=len(manifest) + len(raw_config) + sum(x.size for x in layers),
        )

    def _layer(self, name: str) -> LayerBlob:
        m = self._a.member(name)
        digest = _sha256_of(self._a.stream(m))
        _ingest(self._a, m, self._content, digest)
        with open(self._content.path(digest), "rb") as f:
            kind = _compression(f.read(4))
        return LayerBlob(media_type=_MEDIA_BY_COMPRESSION[kind], digest=digest, size=m.size)


def _compression(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    return "zstd" if head == b"\x28\xb5\x2f\xfd" else ""


def _manifest_json(config_digest: str, config_size: int, layers: tuple[LayerBlob, ...]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": x.media_type, "digest": x.digest, "size": x.size} for x in layers],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _tags(tags: object, what: str) -> list[str]:
    if tags is None:
        return []
    if not _str_list(tags):
        raise errors.InvalidArgument(f"{what}: RepoTags must be a list of strings")
    refs = [parse(tag) for tag in tags]
    return [f"{r.name}:{r.tag}" for r in refs if r.digest is None]


def _str_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise errors.InvalidArgument(f"archive {what} is not valid JSON: {exc}") from None
