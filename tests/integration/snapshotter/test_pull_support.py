"""The test-support image builder and archive writers produce what they claim."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import stat
import tarfile
from pathlib import Path

import zstandard

from snapshotter import descriptors as d
from tests.support import oci_builder as ob
from tests.support.registry import bcrypt_hash


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def members(tar: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return {m.name: m for m in t.getmembers()}


def test_busybox_layer_is_a_root_filesystem_with_hard_linked_applets() -> None:
    lay = ob.busybox_rootfs_layer()
    tar = gzip.decompress(lay.data)
    assert sha(tar) == lay.diff_id and sha(lay.data) == lay.digest and lay.size == len(lay.data)
    m = members(tar)
    assert m["bin/busybox"].isreg() and m["bin/busybox"].mode == 0o755
    for applet in ("sh", "ls", "cat", "top", "id", "ping", "hostname", "mount", "nc", "wget", "ps"):
        assert m[f"bin/{applet}"].islnk() and m[f"bin/{applet}"].linkname == "bin/busybox"
    assert len([x for x in m.values() if x.islnk()]) == len(ob.busybox_applets())
    assert m["tmp"].isdir() and stat.S_IMODE(m["tmp"].mode) == 0o1777
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        passwd = t.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
    assert "nobody:x:65534:65534:" in passwd and "www-data:x:33:33:" in passwd
    assert passwd.startswith("root:x:0:0:")


def test_zstd_and_plain_layers_and_special_entries() -> None:
    entries = [
        ob.directory("d", mode=0o700, uid=5, gid=6),
        ob.file("d/f", b"x", mode=0o4755, uid=1000),
        ob.symlink("d/s", "../etc"),
        ob.hardlink("d/h", "d/f"),
        ob.whiteout("d/gone"),
        ob.opaque("d"),
        ob.char_device("dev/null", 1, 3),
        ob.block_device("dev/loop0", 7, 0),
        ob.fifo("d/p"),
    ]
    plain = ob.layer(entries, "")
    zst = ob.layer(entries, "zstd")
    assert zst.media_type == d.OCI_LAYER_ZSTD and plain.media_type == d.OCI_LAYER
    assert zstandard.ZstdDecompressor().decompressobj().decompress(zst.data) == plain.data
    assert zst.diff_id == plain.diff_id == plain.digest
    m = members(plain.data)
    assert m["d/.wh.gone"].isreg() and m["d/.wh..wh..opq"].isreg()
    assert m["d/f"].mode == 0o4755 and m["d/f"].uid == 1000
    assert m["d"].uid == 5 and m["d"].gid == 6
    assert m["dev/null"].ischr() and (m["dev/null"].devmajor, m["dev/null"].devminor) == (1, 3)
    assert m["dev/loop0"].isblk() and m["d/p"].isfifo() and m["d/s"].issym()


def test_hostile_entries_keep_their_names() -> None:
    for name, entries in ob.hostile_entries().items():
        names = set(members(ob.tar_bytes(entries)))
        assert {e.path for e in entries} == names, name
    assert "../escape" in members(ob.tar_bytes(ob.hostile_entries()["dotdot"]))


def test_image_config_and_manifest() -> None:
    spec = ob.ImageSpec(
        user="www-data:1004",
        env=("PATH=/bin", "A=b"),
        entrypoint=["/bin/sh", "-c"],
        cmd=["echo hi"],
        working_dir="/tmp",
        stop_signal="SIGQUIT",
        labels={"k": "v"},
        exposed_ports=["80/tcp"],
        volumes=["/data"],
    )
    image = ob.make_image([ob.busybox_rootfs_layer()], spec)
    config = json.loads(image.config)
    assert config["config"] == {
        "User": "www-data:1004",
        "Env": ["PATH=/bin", "A=b"],
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo hi"],
        "WorkingDir": "/tmp",
        "StopSignal": "SIGQUIT",
        "Labels": {"k": "v"},
        "ExposedPorts": {"80/tcp": {}},
        "Volumes": {"/data": {}},
    }
    parsed = d.parse_manifest(image.manifest, image.media_type)
    assert parsed.config.digest == image.config_digest
    assert d.parse_config(image.config, layers=1).diff_ids == (image.layers[0].diff_id,)


def test_multiarch_index_puts_amd64_last_and_parses() -> None:
    index = ob.multiarch_index(ob.busybox_image())
    parsed = d.parse_index(index.data, index.media_type)
    assert [str(x.platform) for x in parsed.manifests] == [
        "linux/arm64",
        "linux/arm/v7",
        "linux/amd64",
    ]
    docker = ob.multiarch_index(ob.busybox_image(docker=True), docker=True)
    assert (
        d.parse_index(docker.data, d.DOCKER_MANIFEST_LIST).manifests[2].media_type
        == d.DOCKER_MANIFEST
    )


def test_oci_layout_writer(tmp_path: Path) -> None:
    index = ob.multiarch_index(ob.busybox_image())
    ob.write_oci_layout(tmp_path, index, ref_name="1.0")
    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    top = json.loads((tmp_path / "index.json").read_text())["manifests"][0]
    assert top["digest"] == index.digest
    assert top["annotations"]["org.opencontainers.image.ref.name"] == "1.0"
    for blob in (tmp_path / "blobs/sha256").iterdir():
        assert sha(blob.read_bytes()) == f"sha256:{blob.name}"
    assert (tmp_path / "blobs/sha256" / index.images[2].layers[0].digest[7:]).exists()


def test_docker_save_writers(tmp_path: Path) -> None:
    image = ob.busybox_image()
    ob.write_docker_save(tmp_path / "classic.tar", image, repo_tags=["busybox:1"])
    with tarfile.open(tmp_path / "classic.tar") as t:
        [entry] = json.loads(t.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert entry["RepoTags"] == ["busybox:1"]
        assert t.extractfile(entry["Config"]).read() == image.config  # type: ignore[union-attr]
        layer_tar = t.extractfile(entry["Layers"][0]).read()  # type: ignore[union-attr]
        assert sha(layer_tar) == image.layers[0].diff_id
    ob.write_docker_save(tmp_path / "oci.tar", image, repo_tags=["busybox:1"], oci=True)
    with tarfile.open(tmp_path / "oci.tar") as t:
        names = set(t.getnames())
        [entry] = json.loads(t.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert {"oci-layout", "index.json", entry["Config"], *entry["Layers"]} <= names


def test_hostile_image_variants() -> None:
    image = ob.make_image([ob.random_layer(1000)])
    bad = ob.with_corrupt_layer(image)
    assert sha(bad.layers[0].data) != bad.layers[0].digest and bad.manifest == image.manifest
    sized = ob.with_declared_size(image, 0, 5)
    assert json.loads(sized.manifest)["layers"][0]["size"] == 5
    assert ob.with_media_type(image, d.OCI_INDEX).media_type == d.OCI_INDEX


def test_bcrypt_hash_is_bcrypt() -> None:
    hashed = bcrypt_hash("pw")
    assert hashed.startswith("$2b$05$") and len(hashed) == 60
