"""Every image critest pulls, by repository path, built from the inputs in `Inputs`.

Repositories are paths in the one local registry that all upstream hosts are mirrored to, so
`registry.k8s.io/pause:3.9` and `k8s.gcr.io/pause:3.9` are the same image by construction.
Not reproducible offline: `test-image-digest@sha256:9700f9...`, pinned to upstream's digest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from e2e.images import programs, rootfs, servers
from e2e.images.debs import package_root
from e2e.images.flavours import Flavour, serve
from tests.support.oci_builder import (
    BUSYBOX,
    Image,
    ImageSpec,
    Index,
    Layer,
    busybox_rootfs_layer,
    file,
    layer,
)

MIRRORED_HOSTS: Final = ("registry.k8s.io", "k8s.gcr.io", "gcr.io", "public.ecr.aws", "docker.io")
E2E: Final = "e2e-test-images/"
CRI_TOOLS: Final = "k8s-staging-cri-tools/"
ECR_BUSYBOX_TAGS: Final = ("1.35.0-glibc", "1-glibc", "1", "1-uclibc", "1-musl")
SH: Final = ImageSpec(cmd=["sh"])


@dataclass(frozen=True, slots=True, kw_only=True)
class Inputs:
    """Files the images are made of: unpacked Debian packages and compiled helpers."""

    busybox: Path  # Debian's dynamic busybox
    nginx_root: Path
    nginx_common_root: Path
    pause: Path
    nonewprivs: Path
    static_busybox: Path = BUSYBOX


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """`target` pushed to `repository` under each of `tags`."""

    repository: str
    tags: tuple[str, ...]
    target: Image | Index


def gather_inputs(cache: Path) -> Inputs:
    """Download and unpack the packages, compile the helpers (all cached under `cache`)."""
    return Inputs(
        busybox=package_root("busybox", cache) / "bin/busybox",
        nginx_root=package_root("nginx", cache),
        nginx_common_root=package_root("nginx-common", cache),
        pause=programs.compile_static(programs.PAUSE_C, "pause", cache / "bin"),
        nonewprivs=programs.compile_static(programs.NONEWPRIVS_C, "nonewprivs", cache / "bin"),
    )


def build_catalog(inputs: Inputs) -> list[Published]:
    base = layer(rootfs.busybox_entries(inputs.busybox))
    return [*_e2e_images(inputs, base), *_pause_images(inputs), *_cri_tools_images(inputs, base)]


def _one(repo: str, tag: str, layers: list[Layer], spec: ImageSpec, flavour: Flavour) -> Published:
    return Published(repository=repo, tags=(tag,), target=serve(layers, spec, flavour))


def _marker(name: str) -> Layer:
    return layer([file(name, f"{name}\n".encode())])


def _nginx_layer(inputs: Inputs, port: int) -> Layer:
    libs = rootfs.base_libraries(inputs.busybox)
    entries = servers.nginx_entries(
        inputs.nginx_root, inputs.nginx_common_root, port=port, base_libs=libs
    )
    return layer(entries)


def _e2e_images(inputs: Inputs, base: Layer) -> Iterator[Published]:
    yield _one(E2E + "busybox", "1.29-2", [base], SH, "oci-index")
    nginx = ImageSpec(cmd=["nginx", "-g", "daemon off;"], exposed_ports=["80/tcp"])
    yield _one(E2E + "nginx", "1.14-2", [base, _nginx_layer(inputs, 80)], nginx, "oci-index")
    httpd = ImageSpec(cmd=["httpd-foreground"], exposed_ports=["80/tcp"])
    httpd_layer = layer(servers.httpd_entries())
    yield _one(E2E + "httpd", "2.4.39-4", [base, httpd_layer], httpd, "docker-list")
    nnp = layer([file("usr/local/bin/nnp", inputs.nonewprivs.read_bytes(), mode=0o4755)])
    nnp_spec = ImageSpec(entrypoint=["/usr/local/bin/nnp"])
    yield _one(E2E + "nonewprivs", "1.3", [base, nnp], nnp_spec, "oci-index")


def _pause_images(inputs: Inputs) -> Iterator[Published]:
    pause = layer([file("pause", inputs.pause.read_bytes(), mode=0o755)])
    spec = ImageSpec(entrypoint=["/pause"], user="65535:65535")
    yield _one("pause", "3.9", [pause], spec, "docker-list")
    newer = ImageSpec(entrypoint=["/pause"], user="65535:65535", labels={"version": "3.10"})
    yield _one("pause", "3.10", [pause], newer, "oci-index")


def _cri_tools_images(inputs: Inputs, base: Layer) -> Iterator[Published]:
    users = {"uid": "1002", "username": "www-data", "uid-group": "1003:1004"}
    users["username-group"] = "www-data:1004"
    for suffix, user in users.items():
        spec = ImageSpec(cmd=["sh"], user=user)
        yield _one(f"{CRI_TOOLS}test-image-user-{suffix}", "latest", [base], spec, "docker")
    group = layer(rootfs.with_parents(rootfs.predefined_group_entries()))
    spec = ImageSpec(cmd=["sh"], user="1000")
    predefined = CRI_TOOLS + "test-image-predefined-group"
    yield _one(predefined, "latest", [base, group], spec, "oci-index")
    hostnet = [base, _nginx_layer(inputs, 12003)]
    nginx = ImageSpec(cmd=["nginx", "-g", "daemon off;"], exposed_ports=["12003/tcp"])
    yield _one(CRI_TOOLS + "hostnet-nginx-amd64", "latest", hostnet, nginx, "oci")
    yield from _tagged_test_images(base)
    yield from _ecr_busybox(inputs)


def _tagged_test_images(base: Layer) -> Iterator[Published]:
    for name in ("test-image-1", "test-image-2", "test-image-3", "test-image-latest"):
        yield _one(CRI_TOOLS + name, "latest", [base, _marker(name)], SH, "oci-index")
    for tag in ("test", "all"):
        marker = _marker(f"test-image-tag-{tag}")
        yield _one(CRI_TOOLS + "test-image-tag", tag, [base, marker], SH, "oci-index")
    tags = Published(
        repository=CRI_TOOLS + "test-image-tags",
        tags=("1", "2", "3"),
        target=serve([base, _marker("test-image-tags")], SH, "oci-index"),
    )
    yield tags


def _ecr_busybox(inputs: Inputs) -> Iterator[Published]:
    """The benchmark's images: busybox-static, one distinct image per tag."""
    static = busybox_rootfs_layer("gzip", inputs.static_busybox)
    for tag in ECR_BUSYBOX_TAGS:
        marker = _marker(f"busybox-{tag}")
        yield _one("docker/library/busybox", tag, [static, marker], SH, "oci-index")


def upstream_refs(catalog: list[Published]) -> list[str]:
    """The references critest uses for `catalog` (each repository under its upstream host)."""
    refs = []
    for pub in catalog:
        for host in _hosts(pub.repository):
            refs += [f"{host}/{pub.repository}:{tag}" for tag in pub.tags]
    return refs


def _hosts(repository: str) -> tuple[str, ...]:
    if repository.startswith(CRI_TOOLS):
        return ("gcr.io",)
    if repository.startswith("docker/"):
        return ("public.ecr.aws",)
    if repository == "pause":
        return ("registry.k8s.io", "k8s.gcr.io")
    return ("registry.k8s.io",)
