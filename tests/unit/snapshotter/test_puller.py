"""The puller and registry client against an in-memory registry (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
from pathlib import Path

import pytest

from snapshotter import descriptors as d
from snapshotter import errors
from snapshotter.content import ContentStore
from snapshotter.puller import Progress, Puller
from snapshotter.reference import parse
from snapshotter.registry.auth import Credentials, Unauthorized
from snapshotter.registry.client import RegistryClient
from snapshotter.registry.hosts import RegistryHosts
from tests.support import oci_builder as ob
from tests.unit.snapshotter.memory_registry import MemoryHost, MemoryRegistry

REG = "reg.test"
REPO = "library/app"

NOISE = random.Random(7).randbytes(400_000)  # incompressible, the same in every run
LAYERS = (
    ob.layer([ob.directory("etc"), ob.file("etc/a", NOISE[:5000])], "gzip"),
    ob.layer([ob.file("big", NOISE[:300_000])], "zstd"),
    ob.layer([ob.file("plain", NOISE[-3000:])], ""),
)
IMAGE = ob.make_image(LAYERS, ob.ImageSpec(cmd=["sh"], user="33"))


@dataclasses.dataclass
class Env:
    registry: MemoryRegistry
    upstream: MemoryHost
    store: ContentStore
    tmp: Path

    def puller(self, *, mirrors: list[str] | None = None, **kwargs: object) -> Puller:
        hosts = RegistryHosts(
            config_path=None, mirrors={REG: mirrors or []}, insecure=[REG, "m1.test", "m2.test"]
        )
        client = RegistryClient(
            hosts,
            credentials=kwargs.pop("credentials", None),  # type: ignore[arg-type]
            retries=kwargs.pop("retries", 3),  # type: ignore[arg-type]
            backoff=0.0,
            transport=self.registry.transport(),
        )
        return Puller(self.store, hosts, client=client, **kwargs)  # type: ignore[arg-type]

    async def pull(self, ref: str, **kwargs: object) -> object:
        puller = self.puller()
        try:
            return await puller.pull(parse(ref), **kwargs)  # type: ignore[arg-type]
        finally:
            await puller.aclose()


@pytest.fixture
def env(tmp_path: Path) -> Env:
    registry = MemoryRegistry()
    upstream = registry.host(REG)
    upstream.add(REPO, "1", IMAGE)
    return Env(registry, upstream, ContentStore(tmp_path / "content"), tmp_path)


async def pull(env: Env, ref: str = f"{REG}/{REPO}:1", **kwargs: object):  # type: ignore[no-untyped-def]
    puller = env.puller()
    try:
        return await puller.pull(parse(ref), **kwargs)  # type: ignore[arg-type]
    finally:
        await puller.aclose()


def blob_gets(env: Env, digest: str) -> int:
    return sum(1 for r in env.registry.requests if r.url.path.endswith(f"/blobs/{digest}"))


async def test_pull_by_tag_stores_everything(env: Env) -> None:
    result = await pull(env)
    assert result.manifest_digest == IMAGE.digest
    assert result.index_digest is None
    assert result.config_digest == IMAGE.config_digest
    assert result.config["config"]["User"] == "33"
    assert [x.digest for x in result.layers] == [x.digest for x in LAYERS]
    assert [x.compression for x in result.layers] == ["gzip", "zstd", ""]
    assert result.diff_ids == tuple(x.diff_id for x in LAYERS)
    assert result.size == len(IMAGE.manifest) + len(IMAGE.config) + sum(x.size for x in LAYERS)
    assert result.repo_digest == f"{REG}/{REPO}@{IMAGE.digest}"
    expected = {IMAGE.digest, IMAGE.config_digest, *(x.digest for x in LAYERS)}
    assert set(env.store.digests()) == expected
    assert env.store.ingests() == []
    for lay in LAYERS:
        assert env.store.path(lay.digest).read_bytes() == lay.data


async def test_pull_by_digest_and_by_tag_plus_digest(env: Env) -> None:
    by_digest = await pull(env, f"{REG}/{REPO}@{IMAGE.digest}")
    both = await pull(env, f"{REG}/{REPO}:no-such-tag@{IMAGE.digest}")  # the digest wins
    assert by_digest.manifest_digest == both.manifest_digest == IMAGE.digest
    assert env.registry.paths(kind="manifests") == [f"/v2/{REPO}/manifests/{IMAGE.digest}"] * 2


async def test_index_selects_amd64_though_it_is_not_first(env: Env) -> None:
    index = ob.multiarch_index(IMAGE)
    env.upstream.add(REPO, "multi", index)
    result = await pull(
        env,
        f"{REG}/{REPO}:multi",
    )
    assert result.index_digest == index.digest
    assert result.manifest_digest == IMAGE.digest
    assert result.repo_digest == f"{REG}/{REPO}@{index.digest}"
    assert env.store.exists(index.digest)
    foreign = {i.digest for i in index.images[:2]} | {i.config_digest for i in index.images[:2]}
    assert not foreign & set(env.store.digests())  # nothing of other platforms was fetched


async def test_docker_manifest_list(env: Env) -> None:
    image = ob.busybox_image(docker=True)
    env.upstream.add(REPO, "docker", ob.multiarch_index(image, docker=True))
    result = await pull(env, f"{REG}/{REPO}:docker")
    assert result.layers[0].media_type == d.DOCKER_LAYER_GZIP


async def test_no_platform_match_names_the_platforms(env: Env) -> None:
    env.upstream.add(
        REPO, "arm", ob.make_index([ob.other_arch_image("arm64"), ob.other_arch_image("s390x")])
    )
    with pytest.raises(errors.NotFound, match="available: linux/arm64, linux/s390x"):
        await pull(env, f"{REG}/{REPO}:arm")


async def test_unknown_tag_and_repo_are_not_found(env: Env) -> None:
    with pytest.raises(errors.NotFound, match="404"):
        await pull(env, f"{REG}/{REPO}:nope")
    with pytest.raises(errors.NotFound):
        await pull(env, f"{REG}/other/repo:1")


async def test_manifest_whose_body_is_not_its_content_type(env: Env) -> None:
    env.upstream.content_type["1"] = d.OCI_INDEX
    with pytest.raises(errors.InvalidArgument, match=r"declared as .*index.* but"):
        await pull(env)


async def test_generic_content_type_falls_back_to_the_document(env: Env) -> None:
    env.upstream.content_type["1"] = "application/octet-stream"
    assert (await pull(env)).manifest_digest == IMAGE.digest


async def test_manifest_by_digest_must_match_its_digest(env: Env) -> None:
    bogus = "sha256:" + "9" * 64
    env.upstream.manifests[(REPO, bogus)] = (IMAGE.manifest, IMAGE.media_type)
    with pytest.raises(errors.InvalidArgument, match="has digest"):
        await pull(env, f"{REG}/{REPO}@{bogus}")


async def test_index_entry_with_wrong_size_is_rejected(env: Env) -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": d.OCI_INDEX,
        "manifests": [IMAGE.descriptor() | {"size": 3}],
    }
    env.upstream.manifests[(REPO, "lie")] = (json.dumps(doc).encode(), d.OCI_INDEX)
    with pytest.raises(errors.InvalidArgument, match="index says 3"):
        await pull(env, f"{REG}/{REPO}:lie")


@pytest.mark.parametrize("chunked", [False, True])
async def test_huge_manifest_is_refused_without_reading_it_all(env: Env, chunked: bool) -> None:
    env.upstream.chunked = chunked
    env.upstream.manifests[(REPO, "huge")] = (b" " * (5 << 20), d.OCI_MANIFEST)
    with pytest.raises(errors.InvalidArgument, match="more than 4194304"):
        await pull(env, f"{REG}/{REPO}:huge")


async def test_config_declared_too_big_is_not_fetched(env: Env) -> None:
    doc = json.loads(IMAGE.manifest)
    doc["config"]["size"] = 5 << 20
    data = json.dumps(doc).encode()
    env.upstream.manifests[(REPO, "bigconf")] = (data, d.OCI_MANIFEST)
    with pytest.raises(errors.InvalidArgument, match="image config"):
        await pull(env, f"{REG}/{REPO}:bigconf")
    assert blob_gets(env, IMAGE.config_digest) == 0


async def test_diff_ids_must_match_layer_count(env: Env) -> None:
    config = ob.canonical_json(ob.config_json(LAYERS[:1], ob.ImageSpec()))
    image = ob.image_from_parts(LAYERS, config)
    env.upstream.add(REPO, "short", image)
    with pytest.raises(errors.InvalidArgument, match="1 diff_ids for 3 layers"):
        await pull(env, f"{REG}/{REPO}:short")


async def test_foreign_layers_are_rejected(env: Env) -> None:
    doc = json.loads(IMAGE.manifest)
    doc["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    env.upstream.manifests[(REPO, "foreign")] = (json.dumps(doc).encode(), d.OCI_MANIFEST)
    with pytest.raises(errors.InvalidArgument, match="non-distributable"):
        await pull(env, f"{REG}/{REPO}:foreign")


async def test_corrupt_layer_leaves_nothing_behind(env: Env) -> None:
    bad = ob.with_corrupt_layer(IMAGE, 1)
    env.upstream.blobs.update(bad.blobs())
    with pytest.raises(
        errors.InvalidArgument, match=f"blob {LAYERS[1].digest}: content has digest"
    ):
        await pull(env)
    assert LAYERS[1].digest not in env.store.digests()
    assert LAYERS[1].digest not in env.store.ingests()  # other layers may keep partials


@pytest.mark.parametrize("delta", [-1, +1])
async def test_blob_size_must_match_descriptor(env: Env, delta: int) -> None:
    image = ob.with_declared_size(IMAGE, 0, LAYERS[0].size + delta)
    env.upstream.add(REPO, "sized", image)
    with pytest.raises(errors.InvalidArgument, match=LAYERS[0].digest):
        await pull(env, f"{REG}/{REPO}:sized")
    assert LAYERS[0].digest not in env.store.digests()
    assert LAYERS[0].digest not in env.store.ingests()


async def test_corrupt_mirror_falls_back_to_upstream(env: Env) -> None:
    mirror = env.registry.host("m1.test")
    mirror.add(REPO, "1", ob.with_corrupt_layer(IMAGE, 0))
    puller = env.puller(mirrors=["m1.test"])
    result = await puller.pull(parse(f"{REG}/{REPO}:1"))
    await puller.aclose()
    assert env.store.path(LAYERS[0].digest).read_bytes() == LAYERS[0].data
    assert result.manifest_digest == IMAGE.digest


async def test_dead_mirror_is_skipped_without_retries(env: Env) -> None:
    env.registry.host("m1.test", down=True)
    mirror2 = env.registry.host("m2.test")
    mirror2.add(REPO, "1", IMAGE)
    puller = env.puller(mirrors=["m1.test", "m2.test"])
    await puller.pull(parse(f"{REG}/{REPO}:1"))
    await puller.aclose()
    requests = 2 + len(LAYERS)  # manifest, config, layers
    assert len(env.registry.paths("m1.test")) == requests  # one try each, no retries
    assert len(env.registry.paths("m2.test")) == requests
    assert env.registry.paths(REG) == []


async def test_mirror_404_falls_back_to_upstream(env: Env) -> None:
    env.registry.host("m1.test")
    puller = env.puller(mirrors=["m1.test"])
    assert (await puller.pull(parse(f"{REG}/{REPO}:1"))).manifest_digest == IMAGE.digest
    await puller.aclose()


async def test_all_hosts_down_is_unavailable_after_retries(env: Env) -> None:
    env.upstream.down = True
    env.registry.host("m1.test", down=True)
    puller = env.puller(mirrors=["m1.test"], retries=2)
    with pytest.raises(errors.Unavailable, match="every registry host failed"):
        await puller.pull(parse(f"{REG}/{REPO}:1"))
    await puller.aclose()
    assert len(env.registry.paths("m1.test")) == 1
    assert len(env.registry.paths(REG)) == 3  # the last host is retried


async def test_5xx_and_429_are_retried(env: Env) -> None:
    env.upstream.statuses[f"/v2/{REPO}/manifests/1"] = [503, 429]
    env.upstream.statuses[f"/v2/{REPO}/blobs/{LAYERS[0].digest}"] = [500]
    await pull(env)
    assert blob_gets(env, LAYERS[0].digest) == 2


async def test_persistent_5xx_gives_up(env: Env) -> None:
    env.upstream.statuses[f"/v2/{REPO}/manifests/1"] = [502] * 10
    with pytest.raises(errors.Unavailable, match="gave up after 4 attempts"):
        await pull(env)


async def test_broken_transfer_resumes_with_range(env: Env) -> None:
    env.upstream.break_after[LAYERS[1].digest] = 70000
    await pull(env)
    gets = [r for r in env.registry.requests if r.url.path.endswith(LAYERS[1].digest)]
    assert [r.headers.get("range") for r in gets] == [None, "bytes=70000-"]
    assert env.store.path(LAYERS[1].digest).read_bytes() == LAYERS[1].data


async def test_server_ignoring_range_restarts_from_zero(env: Env) -> None:
    env.upstream.ranges = False
    env.upstream.break_after[LAYERS[1].digest] = 70000
    await pull(env)
    assert env.store.path(LAYERS[1].digest).read_bytes() == LAYERS[1].data


def seed_partial(store: ContentStore, data: bytes, digest: str) -> None:
    with store.ingest(digest, len(data)) as ingest:
        ingest.write(data)


async def test_partial_ingest_from_a_crash_is_resumed(env: Env) -> None:
    lay = LAYERS[1]
    seed_partial(env.store, lay.data[:1000], lay.digest)
    events: list[Progress] = []
    await pull(env, progress=events.append)
    [get] = [r for r in env.registry.requests if r.url.path.endswith(lay.digest)]
    assert get.headers["range"] == "bytes=1000-"
    assert env.store.path(lay.digest).read_bytes() == lay.data


async def test_garbage_partial_is_refetched_whole(env: Env) -> None:
    lay = LAYERS[1]
    seed_partial(env.store, b"\0" * 1000, lay.digest)
    await pull(env)
    gets = [r for r in env.registry.requests if r.url.path.endswith(lay.digest)]
    assert [r.headers.get("range") for r in gets] == ["bytes=1000-", None]
    assert env.store.path(lay.digest).read_bytes() == lay.data


async def test_blobs_in_the_store_are_not_downloaded_again(env: Env) -> None:
    await pull(env)
    env.registry.requests.clear()
    await pull(env)
    assert env.registry.paths(kind="blobs") == []
    assert len(env.registry.paths(kind="manifests")) == 1


async def test_concurrent_pulls_of_one_reference_share_everything(env: Env) -> None:
    puller = env.puller()
    ref = parse(f"{REG}/{REPO}:1")
    a, b, c = await asyncio.gather(puller.pull(ref), puller.pull(ref), puller.pull(ref))
    await puller.aclose()
    assert a == b == c
    assert len(env.registry.paths(kind="manifests")) == 1
    for lay in LAYERS:
        assert blob_gets(env, lay.digest) == 1


async def test_pulls_of_different_references_share_blob_downloads(env: Env) -> None:
    other = ob.make_image(LAYERS, ob.ImageSpec(cmd=["other"]))
    env.upstream.add(REPO, "2", other)
    puller = env.puller()
    await asyncio.gather(
        puller.pull(parse(f"{REG}/{REPO}:1")), puller.pull(parse(f"{REG}/{REPO}:2"))
    )
    await puller.aclose()
    for lay in LAYERS:
        assert blob_gets(env, lay.digest) == 1


async def test_progress_reports_each_layer_to_completion(env: Env) -> None:
    events: list[Progress] = []
    await pull(env, progress=events.append)
    for lay in LAYERS:
        mine = [e.done for e in events if e.layer == lay.digest]
        assert mine == sorted(mine) and mine[-1] == lay.size
        assert {e.total for e in events if e.layer == lay.digest} == {lay.size}
    assert {e.ref for e in events} == {f"{REG}/{REPO}:1"}


async def test_stall_is_deadline_exceeded_naming_the_layer(env: Env) -> None:
    env.upstream.stall_after[LAYERS[2].digest] = 100
    with pytest.raises(errors.DeadlineExceeded, match=LAYERS[2].digest):
        await pull(env)
    assert blob_gets(env, LAYERS[2].digest) == 1  # a stall is not retried


async def test_cancelled_pull_keeps_partial_for_resume(env: Env) -> None:
    env.upstream.stall_after[LAYERS[1].digest] = 70000
    puller = env.puller()
    task = asyncio.create_task(puller.pull(parse(f"{REG}/{REPO}:1")))
    with pytest.raises((errors.DeadlineExceeded, asyncio.CancelledError)):
        await task
    await puller.aclose()
    assert LAYERS[1].digest in env.store.ingests()
    del env.upstream.stall_after[LAYERS[1].digest]
    await pull(env)
    assert [
        r.headers.get("range")
        for r in env.registry.requests
        if r.url.path.endswith(LAYERS[1].digest)
    ][-1] == "bytes=70000-"


async def test_pull_only_mirror_serves_blobs_but_does_not_resolve_tags(
    env: Env, tmp_path: Path
) -> None:
    mirror = env.registry.host("m1.test")
    mirror.add(REPO, "1", IMAGE)
    config = tmp_path / "certs.d" / REG
    config.mkdir(parents=True)
    (config / "hosts.toml").write_text('[host."http://m1.test"]\ncapabilities = ["pull"]\n')
    hosts = RegistryHosts(config_path=tmp_path / "certs.d", insecure=[REG])
    client = RegistryClient(hosts, backoff=0.0, transport=env.registry.transport())
    puller = Puller(env.store, hosts, client=client)
    await puller.pull(parse(f"{REG}/{REPO}:1"))
    await puller.aclose()
    assert env.registry.paths(REG) == [f"/v2/{REPO}/manifests/1"]
    assert len(env.registry.paths("m1.test", "blobs")) == 1 + len(LAYERS)


async def test_blob_redirect_drops_authorization(env: Env) -> None:
    env.upstream.auth = "bearer"
    env.upstream.redirect_blobs = "cdn.test"
    cdn = env.registry.host("cdn.test")
    cdn.blobs.update(IMAGE.blobs())
    await pull(env)
    storage = [r for r in env.registry.requests if r.url.host == "cdn.test"]
    assert len(storage) == 1 + len(LAYERS)
    assert all("authorization" not in r.headers for r in storage)


# -- auth ------------------------------------------------------------------------------


async def test_basic_auth(env: Env) -> None:
    env.upstream.auth = "basic"
    env.registry.users["u"] = "p"
    await pull(env, auth=Credentials(username="u", password="p"))
    with pytest.raises(Unauthorized):
        await pull(env, auth=Credentials(username="u", password="wrong"))
    with pytest.raises(Unauthorized, match="requires credentials"):
        await pull(env)


async def test_anonymous_bearer_token_is_fetched_once_per_pull(env: Env) -> None:
    env.upstream.auth = "bearer"
    await pull(env)
    token_requests = [r for r in env.registry.requests if r.url.host == "auth.test"]
    assert len(token_requests) == 1
    assert token_requests[0].url.params.get_list("scope") == [f"repository:{REPO}:pull", "x"]
    assert token_requests[0].url.params["service"] == "memory"
    assert "authorization" not in token_requests[0].headers


async def test_bearer_with_basic_credentials_at_the_token_service(env: Env) -> None:
    env.upstream.auth = "bearer"
    env.registry.users["u"] = "p"
    await pull(env, auth=Credentials(auth="dTpw"))  # base64 "u:p"
    with pytest.raises(Unauthorized, match="refused the credentials"):
        await pull(env, auth=Credentials(username="u", password="bad"))


async def test_identity_token_is_a_refresh_token_post(env: Env) -> None:
    env.upstream.auth = "bearer"
    env.registry.refresh_tokens["idt"] = "u"
    await pull(env, auth=Credentials(identity_token="idt"))
    [token_request] = [r for r in env.registry.requests if r.url.host == "auth.test"]
    assert token_request.method == "POST"
    assert b"grant_type=refresh_token" in token_request.content


async def test_registry_token_is_used_directly(env: Env) -> None:
    env.upstream.auth = "bearer"
    await pull(env, auth=Credentials(registry_token="token-direct"))
    assert not [r for r in env.registry.requests if r.url.host == "auth.test"]
    assert env.registry.requests[-1].headers["authorization"] == "Bearer token-direct"


async def test_credentials_file_map_by_host_and_server_address(env: Env) -> None:
    env.upstream.auth = "basic"
    env.registry.users["u"] = "p"
    puller = env.puller(credentials={REG: Credentials(username="u", password="p")})
    await puller.pull(parse(f"{REG}/{REPO}:1"))
    # CRI auth for another server is not sent here; the file's entry is used instead
    await puller.pull(
        parse(f"{REG}/{REPO}:1"),
        auth=Credentials(username="x", password="y", server_address="other.io"),
    )
    await puller.aclose()


async def test_credentials_never_reach_logs(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.upstream.auth = "basic"
    env.registry.users["u"] = "pw-secret-123"
    env.upstream.statuses[f"/v2/{REPO}/manifests/1"] = [503]
    await pull(env, auth=Credentials(username="u", password="pw-secret-123"))
    with pytest.raises(Unauthorized):
        await pull(env, auth=Credentials(username="u", password="pw-secret-456"))
    captured = capsys.readouterr()
    assert "pw-secret" not in captured.out + captured.err


def test_sha256_of_layers_is_what_the_manifest_says() -> None:
    for lay in LAYERS:
        assert "sha256:" + hashlib.sha256(lay.data).hexdigest() == lay.digest
