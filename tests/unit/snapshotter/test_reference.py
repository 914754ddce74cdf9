"""Reference parsing and normalisation (Docker's rules)."""

from __future__ import annotations

import pytest

from snapshotter import errors
from snapshotter.reference import Reference, is_image_id, parse

D = "sha256:" + "a" * 64

NORMAL = [
    # input, domain, path, tag, digest
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("library/busybox", "docker.io", "library/busybox", "latest", None),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/library/busybox:1", "docker.io", "library/busybox", "1", None),
    ("registry-1.docker.io/foo/bar", "docker.io", "foo/bar", "latest", None),
    ("foo/bar/baz", "docker.io", "foo/bar/baz", "latest", None),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io", "pause", "3.9", None),
    (
        "registry.k8s.io/e2e-test-images/busybox:1.29-2",
        "registry.k8s.io",
        "e2e-test-images/busybox",
        "1.29-2",
        None,
    ),
    ("127.0.0.1:5000/library/busybox", "127.0.0.1:5000", "library/busybox", "latest", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/app:v1", "localhost:5000", "app", "v1", None),
    ("Registry.Example.COM/app", "Registry.Example.COM", "app", "latest", None),
    ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
    (f"busybox@{D}", "docker.io", "library/busybox", None, D),
    (f"busybox:1.36@{D}", "docker.io", "library/busybox", "1.36", D),
    (f"gcr.io/a/b:t@{D}", "gcr.io", "a/b", "t", D),
    ("a/b.c/d_e/f__g/h-i/j--k", "docker.io", "a/b.c/d_e/f__g/h-i/j--k", "latest", None),
    ("x:" + "T" * 128, "docker.io", "library/x", "T" * 128, None),
    ("x:_under.score-1", "docker.io", "library/x", "_under.score-1", None),
]


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest"), NORMAL)
def test_parse_normalises(
    text: str, domain: str, path: str, tag: str | None, digest: str | None
) -> None:
    ref = parse(text)
    assert ref == Reference(domain=domain, path=path, tag=tag, digest=digest)
    assert parse(str(ref)) == ref  # the canonical form round-trips


MALFORMED = [
    "",
    "Busybox",  # uppercase repository (treated as a name, not a domain, when alone)
    "docker.io/Library/busybox",
    "busybox:",
    "busybox@",
    ":latest",
    "busybox:-bad",
    "busybox:" + "t" * 129,
    "busybox:has/slash",
    "busybox@sha256:abc",
    "busybox@sha256:" + "A" * 64,
    "busybox@md5:" + "a" * 32,
    "busybox@sha512:" + "a" * 128,  # well formed, but our store is sha256-only
    "busybox@" + "a" * 64,
    "a" * 64,  # an image id is not a name
    "bad..name",
    "bad__ _name",
    "-leading/dash",
    "trailing-/x",
    "reg.io/",
    "reg.io//x",
    "reg-.io/x",
    "reg.io:port/x",
    "x/" + "a" * 260,
    "busy box",
    "busybox:tag:tag",
    "a" * 5000,
]


@pytest.mark.parametrize("text", MALFORMED)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="invalid image reference"):
        parse(text)


def test_uppercase_message_says_lowercase() -> None:
    with pytest.raises(errors.InvalidArgument, match="lowercase"):
        parse("docker.io/Library/busybox")


def test_str_and_name() -> None:
    ref = parse(f"127.0.0.1:5000/a/b:1@{D}")
    assert ref.name == "127.0.0.1:5000/a/b"
    assert str(ref) == f"127.0.0.1:5000/a/b:1@{D}"
    assert ref.object == D
    assert parse("a:1").object == "1"
    assert str(ref.with_digest(D)) == f"127.0.0.1:5000/a/b@{D}"


def test_name_length_limit_counts_domain() -> None:
    assert parse("r.io/" + "a" * 250).path == "a" * 250
    with pytest.raises(errors.InvalidArgument, match="longer than 255"):
        parse("reg.io/" + "a" * 250)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (D, True),
        ("a" * 64, True),
        ("sha256:" + "a" * 63, False),
        ("A" * 64, False),
        ("busybox", False),
        ("sha512:" + "a" * 64, False),
    ],
)
def test_is_image_id(text: str, expected: bool) -> None:
    assert is_image_id(text) is expected
