"""The critest stand-in images have what CRITEST.md's table says critest checks.

Built from the shared cache (/var/cache/berth-critest): the first run downloads three Debian
packages and compiles two tiny programs; later runs load the cached catalog in ~1 s.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.images import build, cache, catalog
from snapshotter import descriptors as d
from tests.support.oci_builder import Image, Index

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds pause and nonewprivs"),
]

APPLETS = ("sh", "ls", "top", "sleep", "id", "ping", "hostname", "mount", "netstat", "touch")


@pytest.fixture(scope="module")
def published() -> list[catalog.Published]:
    return build.critest_images()


@pytest.fixture(scope="module")
def images(published: list[catalog.Published]) -> dict[str, catalog.Published]:
    """By repository (for a repository with several targets, the last one)."""
    return {p.repository: p for p in published}


def amd64(target: Image | Index) -> Image:
    if isinstance(target, Image):
        return target
    (image,) = [i for i in target.images if i.platform.architecture == "amd64"]
    return image


def members(image: Image) -> dict[str, tarfile.TarInfo]:
    out: dict[str, tarfile.TarInfo] = {}
    for lay in image.layers:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(lay.data))) as tar:
            out.update((m.name, m) for m in tar.getmembers())
    return out


def read(image: Image, path: str) -> bytes:
    for lay in reversed(image.layers):
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(lay.data))) as tar:
            if path in tar.getnames():
                handle = tar.extractfile(path)
                assert handle is not None
                return handle.read()
    raise KeyError(path)


def config(image: Image) -> dict[str, object]:
    doc: dict[str, object] = json.loads(image.config)["config"]
    return doc


def test_busybox_is_dynamic_with_applets_as_hard_links(
    images: dict[str, catalog.Published],
) -> None:
    pub = images["e2e-test-images/busybox"]
    assert pub.tags == ("1.29-2",)
    image = amd64(pub.target)
    entries = members(image)
    assert b"/lib64/ld-linux-x86-64.so.2" in read(image, "bin/busybox")  # dynamic
    for applet in APPLETS:
        link = entries[f"bin/{applet}"]
        assert link.islnk() and link.linkname == "bin/busybox", applet
        assert link.mode & 0o777 == 0o755, applet
    for tool in ("usr/bin/ipcs", "usr/bin/pgrep", "lib/x86_64-linux-gnu/libc.so.6"):
        assert entries[tool].isfile(), tool
    passwd = read(image, "etc/passwd").decode()
    assert "\nnobody:x:65534:" in passwd
    assert "\nwww-data:x:33:" in passwd


def test_most_images_are_indexes_whose_first_entry_is_not_amd64(
    images: dict[str, catalog.Published],
) -> None:
    indexes = [p.target for p in images.values() if isinstance(p.target, Index)]
    assert len(indexes) >= len(images) - 6
    for index in indexes:
        assert index.images[0].platform.architecture != "amd64"
    kinds = {p.target.media_type for p in images.values()}
    assert {d.OCI_INDEX, d.DOCKER_MANIFEST_LIST, d.DOCKER_MANIFEST, d.OCI_MANIFEST} <= kinds


def test_user_images_declare_the_users_critest_expects(
    images: dict[str, catalog.Published],
) -> None:
    expected = {
        "uid": "1002",
        "username": "www-data",
        "uid-group": "1003:1004",
        "username-group": "www-data:1004",
    }
    for suffix, user in expected.items():
        pub = images[f"k8s-staging-cri-tools/test-image-user-{suffix}"]
        assert config(amd64(pub.target))["User"] == user


def test_predefined_group_makes_uid_1000_a_member_of_gid_50000(
    images: dict[str, catalog.Published],
) -> None:
    image = amd64(images["k8s-staging-cri-tools/test-image-predefined-group"].target)
    assert config(image)["User"] == "1000"
    group = read(image, "etc/group").decode()
    assert "group-defined-in-image:x:50000:default-user\n" in group
    assert "default-user:x:1000:1000:" in read(image, "etc/passwd").decode()


def test_pause_tags_one_repository_so_both_hosts_share_an_id(
    published: list[catalog.Published],
) -> None:
    pauses = [p for p in published if p.repository == "pause"]
    by_tag = {p.tags[0]: amd64(p.target) for p in pauses}
    assert set(by_tag) == {"3.9", "3.10"}
    assert by_tag["3.9"].config_digest != by_tag["3.10"].config_digest
    refs = catalog.upstream_refs(pauses)
    assert {"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"} <= set(refs)


def test_tagged_test_images(
    images: dict[str, catalog.Published], published: list[catalog.Published]
) -> None:
    assert images["k8s-staging-cri-tools/test-image-tags"].tags == ("1", "2", "3")
    distinct = [f"k8s-staging-cri-tools/test-image-{n}" for n in ("1", "2", "3", "latest")]
    distinct_ids = {amd64(images[r].target).config_digest for r in distinct}
    tag_images = [p for p in published if p.repository == "k8s-staging-cri-tools/test-image-tag"]
    assert sorted(p.tags for p in tag_images) == [("all",), ("test",)]
    distinct_ids |= {amd64(p.target).config_digest for p in tag_images}
    assert len(distinct_ids) == 6


def test_nonewprivs_entrypoint_is_setuid_root(images: dict[str, catalog.Published]) -> None:
    image = amd64(images["e2e-test-images/nonewprivs"].target)
    assert config(image)["Entrypoint"] == ["/usr/local/bin/nnp"]
    nnp = members(image)["usr/local/bin/nnp"]
    assert (nnp.mode & 0o7777, nnp.uid) == (0o4755, 0)


def test_web_servers(images: dict[str, catalog.Published]) -> None:
    nginx = amd64(images["e2e-test-images/nginx"].target)
    conf = read(nginx, "etc/nginx/nginx.conf").decode()
    assert "pid /var/run/nginx.pid;" in conf
    assert "listen 80;" in conf
    hostnet = amd64(images["k8s-staging-cri-tools/hostnet-nginx-amd64"].target)
    assert "listen 12003;" in read(hostnet, "etc/nginx/nginx.conf").decode()
    httpd = amd64(images["e2e-test-images/httpd"].target)
    assert config(httpd)["Cmd"] == ["httpd-foreground"]
    assert b'echo "httpd:' in read(httpd, "usr/local/bin/httpd-foreground")


def test_every_reference_in_critest_md_is_published(published: list[catalog.Published]) -> None:
    refs = set(catalog.upstream_refs(published))
    wanted = {
        "registry.k8s.io/e2e-test-images/busybox:1.29-2",
        "registry.k8s.io/e2e-test-images/nginx:1.14-2",
        "registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
        "registry.k8s.io/e2e-test-images/nonewprivs:1.3",
        "registry.k8s.io/pause:3.10",
        "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest",
        "gcr.io/k8s-staging-cri-tools/test-image-latest:latest",
        "gcr.io/k8s-staging-cri-tools/test-image-tag:test",
        "gcr.io/k8s-staging-cri-tools/test-image-tag:all",
    }
    wanted |= {f"public.ecr.aws/docker/library/busybox:{t}" for t in catalog.ECR_BUSYBOX_TAGS}
    assert wanted <= refs


def test_the_cached_layout_loads_back_identical(
    tmp_path: Path, published: list[catalog.Published]
) -> None:
    cache.save(published, tmp_path / "layout")
    assert cache.load(tmp_path / "layout") == published


@pytest.fixture
def rootfs(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "rootfs"


def _unpack(image: Image, dest: Path) -> None:
    dest.mkdir()
    for lay in image.layers:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(lay.data))) as tar:
            if hasattr(tarfile, "data_filter"):  # Pythons with extraction filters want one
                tar.extractall(dest, filter="fully_trusted")
            else:
                tar.extractall(dest)


def test_the_busybox_shell_runs_ls_from_path_and_knows_the_users(
    images: dict[str, catalog.Published], rootfs: Path
) -> None:
    _unpack(amd64(images["k8s-staging-cri-tools/test-image-predefined-group"].target), rootfs)
    # A shell that runs applets in-process would still list / with /bin/ls gone; Debian's
    # dynamic busybox execs it from PATH, which is what the masked-path spec depends on.
    (rootfs / "bin/ls").unlink()
    done = subprocess.run(
        ["chroot", str(rootfs), "/bin/sh", "-c", "id -G default-user; ls /"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.split() == ["1000", "50000"]
    assert "ls: not found" in done.stderr


def test_nginx_finds_all_its_libraries(images: dict[str, catalog.Published], rootfs: Path) -> None:
    _unpack(amd64(images["e2e-test-images/nginx"].target), rootfs)
    done = subprocess.run(
        ["chroot", str(rootfs), "nginx", "-t"], capture_output=True, text=True, check=False
    )
    assert "test is successful" in done.stderr, done.stderr
