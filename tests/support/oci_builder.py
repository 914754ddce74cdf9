"""Build OCI images in memory, without docker: layers, configs, manifests, indexes, archives.

    layer([file("etc/motd", b"hi"), symlink("bin/sh", "busybox"), whiteout("old")], "zstd")
    image = make_image([busybox_rootfs_layer()], cmd=["sh"])
    index = make_index([other_arch_image("arm64"), image])      # amd64 deliberately not first
    write_oci_layout(tmp / "layout", index, ref_name="1.0")
    write_docker_save(tmp / "img.tar", image, repo_tags=["busybox:1.0"])

Everything is deterministic (mtime 0, sorted JSON), so digests are stable
across runs. Entry paths are written verbatim — "../x" and "/x" included — so
the hostile builders at the bottom can produce what a malicious registry would.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

import zstandard

from snapshotter import descriptors as d

Compression = Literal["gzip", "zstd", ""]
Kind = Literal["file", "dir", "symlink", "hardlink", "char", "block", "fifo"]
AMD64: Final = d.Platform(os="linux", architecture="amd64")
DEFAULT_PATH: Final = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX: Final = Path("/bin/busybox")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# -- layer entries ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One tar member. `target` is the link target for symlinks and hard links."""

    path: str
    kind: Kind
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""
    major: int = 0
    minor: int = 0


def file(path: str, data: bytes = b"", *, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path=path, kind="file", data=data, mode=mode, uid=uid, gid=gid)


def directory(path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path=path, kind="dir", mode=mode, uid=uid, gid=gid)


def symlink(path: str, target: str, *, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path=path, kind="symlink", target=target, mode=0o777, uid=uid, gid=gid)


def hardlink(path: str, target: str) -> Entry:
    """`target` is the path of an earlier member of the same layer."""
    return Entry(path=path, kind="hardlink", target=target)


def whiteout(path: str) -> Entry:
    """Delete `path` of a lower layer (OCI: an empty `.wh.<name>` beside it)."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return file(f"{parent}/.wh.{name}" if parent else f".wh.{name}")


def opaque(dir_path: str) -> Entry:
    """Hide everything lower layers put in `dir_path` (OCI opaque whiteout)."""
    return file(f"{dir_path.rstrip('/')}/.wh..wh..opq")


def char_device(path: str, major: int, minor: int, *, mode: int = 0o666) -> Entry:
    return Entry(path=path, kind="char", major=major, minor=minor, mode=mode)


def block_device(path: str, major: int, minor: int, *, mode: int = 0o660) -> Entry:
    return Entry(path=path, kind="block", major=major, minor=minor, mode=mode)


def fifo(path: str, *, mode: int = 0o644) -> Entry:
    return Entry(path=path, kind="fifo", mode=mode)


_TAR_TYPES: Final[Mapping[Kind, bytes]] = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_bytes(entries: Iterable[Entry]) -> bytes:
    """An uncompressed PAX tar of `entries`, in the order given, with mtime 0."""
    buf = io.BytesIO()
    modes: dict[str, int] = {}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.path)
            info.type = _TAR_TYPES[entry.kind]
            # A hard link's header carries its target's mode: some unpackers (containerd)
            # apply it to the shared inode.
            mode = modes.get(entry.target, entry.mode) if entry.kind == "hardlink" else entry.mode
            modes[entry.path] = mode
            info.mode, info.uid, info.gid, info.mtime = mode, entry.uid, entry.gid, 0
            info.linkname = entry.target
            info.devmajor, info.devminor = entry.major, entry.minor
            info.size = len(entry.data) if entry.kind == "file" else 0
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)
    return buf.getvalue()


# -- layers, images, indexes -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Layer:
    """A layer blob as a registry stores it. The fields are what a manifest declares;
    the hostile builders make them disagree with `data` on purpose."""

    media_type: str
    data: bytes
    digest: str
    size: int
    diff_id: str

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


_MEDIA: Final[Mapping[tuple[bool, str], str]] = {
    (False, ""): d.OCI_LAYER,
    (False, "gzip"): d.OCI_LAYER_GZIP,
    (False, "zstd"): d.OCI_LAYER_ZSTD,
    (True, ""): d.DOCKER_LAYER,
    (True, "gzip"): d.DOCKER_LAYER_GZIP,
    (True, "zstd"): d.DOCKER_LAYER_ZSTD,
}


def compress(data: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def layer_from_tar(tar: bytes, compression: Compression = "gzip", *, docker: bool = False) -> Layer:
    blob = compress(tar, compression)
    return Layer(
        media_type=_MEDIA[(docker, compression)],
        data=blob,
        digest=sha256(blob),
        size=len(blob),
        diff_id=sha256(tar),
    )


def layer(
    entries: Iterable[Entry], compression: Compression = "gzip", *, docker: bool = False
) -> Layer:
    """A layer holding `entries`; Docker media types if `docker`."""
    return layer_from_tar(tar_bytes(entries), compression, docker=docker)


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    """One platform's image: manifest bytes (served with `media_type`), config, layers."""

    manifest: bytes
    media_type: str
    config: bytes
    layers: tuple[Layer, ...]
    platform: d.Platform

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    def descriptor(self) -> dict[str, Any]:
        """This image as an index entry."""
        desc = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest)}
        plat = {"architecture": self.platform.architecture, "os": self.platform.os}
        if self.platform.variant:
            plat["variant"] = self.platform.variant
        return desc | {"platform": plat}

    def blobs(self) -> dict[str, bytes]:
        """Config and layer blobs by the digests the manifest declares."""
        out = {sha256(self.config): self.config}
        out.update((lay.digest, lay.data) for lay in self.layers)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Index:
    """A multi-platform index (or Docker manifest list) over `images`, in entry order."""

    data: bytes
    media_type: str
    images: tuple[Image, ...]

    @property
    def digest(self) -> str:
        return sha256(self.data)

    def blobs(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for image in self.images:
            out.update(image.blobs())
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageSpec:
    """The runtime part of an image config (`config` in the image config JSON)."""

    user: str = ""
    env: Sequence[str] = (DEFAULT_PATH,)
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    working_dir: str = ""
    stop_signal: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: Sequence[str] = ()
    volumes: Sequence[str] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Env": list(self.env)}
        pairs: dict[str, Any] = {
            "User": self.user,
            "WorkingDir": self.working_dir,
            "StopSignal": self.stop_signal,
            "Entrypoint": None if self.entrypoint is None else list(self.entrypoint),
            "Cmd": None if self.cmd is None else list(self.cmd),
            "Labels": dict(self.labels) or None,
            "ExposedPorts": {p: {} for p in self.exposed_ports} or None,
            "Volumes": {v: {} for v in self.volumes} or None,
        }
        out.update((k, v) for k, v in pairs.items() if v)
        return out


def config_json(
    layers: Sequence[Layer], spec: ImageSpec, platform: d.Platform = AMD64
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "architecture": platform.architecture,
        "os": platform.os,
        "created": "1970-01-01T00:00:00Z",
        "config": spec.to_json(),
        "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "berth oci_builder"}],
    }
    if platform.variant:
        doc["variant"] = platform.variant
    return doc


def make_image(
    layers: Sequence[Layer],
    spec: ImageSpec | None = None,
    *,
    platform: d.Platform = AMD64,
    docker: bool = False,
    config: Mapping[str, Any] | None = None,
) -> Image:
    """An image of `layers` (base first); `config` replaces the generated config JSON."""
    config_bytes = canonical_json(config or config_json(layers, spec or ImageSpec(), platform))
    return image_from_parts(layers, config_bytes, platform=platform, docker=docker)


def image_from_parts(
    layers: Sequence[Layer], config: bytes, *, platform: d.Platform = AMD64, docker: bool = False
) -> Image:
    media_type = d.DOCKER_MANIFEST if docker else d.OCI_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": d.DOCKER_CONFIG if docker else d.OCI_CONFIG,
            "digest": sha256(config),
            "size": len(config),
        },
        "layers": [lay.descriptor() for lay in layers],
    }
    return Image(
        manifest=canonical_json(manifest),
        media_type=media_type,
        config=config,
        layers=tuple(layers),
        platform=platform,
    )


def make_index(images: Sequence[Image], *, docker: bool = False) -> Index:
    media_type = d.DOCKER_MANIFEST_LIST if docker else d.OCI_INDEX
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [image.descriptor() for image in images],
    }
    return Index(data=canonical_json(doc), media_type=media_type, images=tuple(images))


# -- busybox -----------------------------------------------------------------------------

PASSWD: Final = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    b"www-data:x:33:33:www-data:/var/www:/bin/false\n"
    b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP: Final = b"root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nnogroup:x:65534:\n"


@cache
def busybox_applets(busybox: Path = BUSYBOX) -> tuple[str, ...]:
    """Applet names from `busybox --list`, minus busybox itself."""
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout
    return tuple(sorted(n for n in out.split() if n and "/" not in n and n != "busybox"))


def busybox_entries(busybox: Path = BUSYBOX) -> list[Entry]:
    """A minimal root filesystem: /bin/busybox, its applets as hard links, users, groups."""
    dirs = ["bin", "dev", "etc", "home", "proc", "root", "sys", "usr", "usr/bin", "var", "var/www"]
    entries = [directory(p, mode=0o700 if p == "root" else 0o755) for p in dirs]
    entries.append(directory("tmp", mode=0o1777))
    entries.append(file("bin/busybox", busybox.read_bytes(), mode=0o755))
    entries += [hardlink(f"bin/{name}", "bin/busybox") for name in busybox_applets(busybox)]
    entries.append(file("etc/passwd", PASSWD))
    entries.append(file("etc/group", GROUP))
    return entries


@cache
def busybox_rootfs_layer(compression: Compression = "gzip", busybox: Path = BUSYBOX) -> Layer:
    """The busybox root filesystem as one layer (cached: it is ~1 MB of compression work)."""
    return layer(busybox_entries(busybox), compression)


def busybox_image(
    spec: ImageSpec | None = None, *, compression: Compression = "gzip", docker: bool = False
) -> Image:
    """busybox with `sh` as its command unless `spec` says otherwise."""
    base = busybox_rootfs_layer(compression)
    if docker:
        base = dataclasses.replace(base, media_type=_MEDIA[(True, compression)])
    return make_image([base], spec or ImageSpec(cmd=["sh"]), docker=docker)


def other_arch_image(architecture: str, variant: str = "") -> Image:
    """A small image for a foreign platform (its content is a marker file, not a program)."""
    platform = d.Platform(os="linux", architecture=architecture, variant=variant)
    marker = file("etc/arch", f"{platform}\n".encode())
    return make_image([layer([directory("etc"), marker])], platform=platform)


def multiarch_index(amd64: Image, *, docker: bool = False) -> Index:
    """An index whose first entries are arm64 and arm/v7, with `amd64` third."""
    return make_index(
        [other_arch_image("arm64"), other_arch_image("arm", "v7"), amd64], docker=docker
    )


def random_layer(size: int, compression: Compression = "gzip", *, name: str = "data") -> Layer:
    """One file of `size` incompressible bytes (for transfer and throughput tests)."""
    return layer([file(name, os.urandom(size))], compression)


# -- archives ------------------------------------------------------------------------------


def write_oci_layout(dest: Path, target: Image | Index, *, ref_name: str | None = None) -> None:
    """An OCI image layout directory: oci-layout, index.json, blobs/sha256/*."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest, data in _all_blobs(target).items():
        (blobs / digest.removeprefix("sha256:")).write_bytes(data)
    (dest / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    (dest / "index.json").write_bytes(canonical_json(_layout_index(target, ref_name)))


def _all_blobs(target: Image | Index) -> dict[str, bytes]:
    images = target.images if isinstance(target, Index) else (target,)
    out = {image.digest: image.manifest for image in images}
    for image in images:
        out.update(image.blobs())
    if isinstance(target, Index):
        out[target.digest] = target.data
    return out


def _layout_index(target: Image | Index, ref_name: str | None) -> dict[str, Any]:
    if isinstance(target, Index):
        desc: dict[str, Any] = {
            "mediaType": target.media_type,
            "digest": target.digest,
            "size": len(target.data),
        }
    else:
        desc = target.descriptor()
    if ref_name is not None:
        desc["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    return {"schemaVersion": 2, "mediaType": d.OCI_INDEX, "manifests": [desc]}


def write_docker_save(
    dest: Path, image: Image, *, repo_tags: Sequence[str] = (), oci: bool = False
) -> None:
    """A `docker save` tarball: classic (`<id>.json`, `<n>/layer.tar`, manifest.json) or,
    with `oci`, the Docker 25+ form (an OCI layout plus manifest.json)."""
    with tarfile.open(dest, "w") as tar:
        if oci:
            _docker_save_oci(tar, image, repo_tags)
        else:
            _docker_save_classic(tar, image, repo_tags)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _docker_save_classic(tar: tarfile.TarFile, image: Image, repo_tags: Sequence[str]) -> None:
    config_name = f"{image.config_digest.removeprefix('sha256:')}.json"
    _add(tar, config_name, image.config)
    layer_names = []
    for lay in image.layers:
        name = f"{lay.diff_id.removeprefix('sha256:')}/layer.tar"
        _add(tar, name, _decompress(lay))
        layer_names.append(name)
    entry = {"Config": config_name, "RepoTags": list(repo_tags), "Layers": layer_names}
    _add(tar, "manifest.json", json.dumps([entry]).encode())


def _docker_save_oci(tar: tarfile.TarFile, image: Image, repo_tags: Sequence[str]) -> None:
    for digest, data in _all_blobs(image).items():
        _add(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", data)
    _add(tar, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    _add(tar, "index.json", canonical_json(_layout_index(image, None)))
    layers = [f"blobs/sha256/{lay.digest.removeprefix('sha256:')}" for lay in image.layers]
    config = f"blobs/sha256/{image.config_digest.removeprefix('sha256:')}"
    entry = {"Config": config, "RepoTags": list(repo_tags), "Layers": layers}
    _add(tar, "manifest.json", json.dumps([entry]).encode())


def _decompress(lay: Layer) -> bytes:
    if lay.media_type.endswith("gzip"):
        return gzip.decompress(lay.data)
    if lay.media_type.endswith("zstd"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(lay.data)
    return lay.data


# -- hostile content ---------------------------------------------------------------------


def hostile_entries() -> dict[str, list[Entry]]:
    """Layer contents an unpacker must refuse or contain, by name."""
    return {
        "dotdot": [file("../escape", b"out")],
        "nested_dotdot": [directory("a"), file("a/../../escape", b"out")],
        "absolute": [file("/escape", b"out")],
        "symlink_escape": [symlink("link", "/"), file("link/tmp/escape", b"out")],
        "symlink_relative_escape": [
            directory("d"),
            symlink("d/up", "../../../../.."),
            file("d/up/tmp/escape", b"out"),
        ],
        "hardlink_outside": [hardlink("passwd", "/etc/passwd")],
        "hardlink_dotdot": [hardlink("passwd", "../../../../etc/passwd")],
    }


def with_corrupt_layer(image: Image, index: int = 0) -> Image:
    """The same manifest, but layer `index` serves other bytes of the same size."""
    bad = bytes(b ^ 0xFF for b in image.layers[index].data)
    layers = list(image.layers)
    layers[index] = dataclasses.replace(layers[index], data=bad)
    return dataclasses.replace(image, layers=tuple(layers))


def with_declared_size(image: Image, index: int, size: int) -> Image:
    """A manifest declaring `size` for layer `index` (the blob is unchanged)."""
    layers = list(image.layers)
    layers[index] = dataclasses.replace(layers[index], size=size)
    docker = image.media_type == d.DOCKER_MANIFEST
    return image_from_parts(layers, image.config, platform=image.platform, docker=docker)


def with_media_type(image: Image, media_type: str) -> Image:
    """The same manifest bytes served (and indexed) as `media_type`."""
    return dataclasses.replace(image, media_type=media_type)
