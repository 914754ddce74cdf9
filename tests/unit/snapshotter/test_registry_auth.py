"""Credentials, the docker config.json reader, and WWW-Authenticate challenge parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from snapshotter import errors
from snapshotter.registry.auth import (
    Challenge,
    Credentials,
    load_credentials_file,
    normalize_host,
    parse_challenges,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
            [
                Challenge(
                    scheme="bearer",
                    params={
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull",
                    },
                )
            ],
        ),
        (
            'Basic realm="Registry Realm"',
            [Challenge(scheme="basic", params={"realm": "Registry Realm"})],
        ),
        (
            'Basic realm="a, b", Bearer realm="https://t/token",service=svc',
            [
                Challenge(scheme="basic", params={"realm": "a, b"}),
                Challenge(scheme="bearer", params={"realm": "https://t/token", "service": "svc"}),
            ],
        ),
        (
            'BEARER  Realm = "x" ,  Error="insufficient_scope"',
            [Challenge(scheme="bearer", params={"realm": "x", "error": "insufficient_scope"})],
        ),
        (r'Bearer realm="quo\"ted\\"', [Challenge(scheme="bearer", params={"realm": 'quo"ted\\'})]),
        (
            "Negotiate abc123==, Basic realm=x",
            [Challenge(scheme="negotiate"), Challenge(scheme="basic", params={"realm": "x"})],
        ),
        ("Bearer", [Challenge(scheme="bearer")]),
        ("", []),
    ],
)
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    parsed = parse_challenges([header])
    assert [(c.scheme, dict(c.params)) for c in parsed] == [
        (c.scheme, dict(c.params)) for c in expected
    ]


def test_several_header_values() -> None:
    parsed = parse_challenges(['Basic realm="r"', 'Bearer realm="t"'])
    assert [c.scheme for c in parsed] == ["basic", "bearer"]


def test_repr_hides_secrets() -> None:
    creds = Credentials(
        username="u",
        password="hunter2",
        auth=b64("u:hunter2"),
        identity_token="idt-secret",
        registry_token="rt-secret",
    )
    text = repr(creds) + str(creds)
    for secret in ("hunter2", b64("u:hunter2"), "idt-secret", "rt-secret"):
        assert secret not in text
    assert "u" in text


def test_basic_from_fields_or_auth() -> None:
    assert Credentials(username="u", password="p").basic() == ("u", "p")
    assert Credentials(auth=b64("user:pa:ss")).basic() == ("user", "pa:ss")
    assert Credentials(identity_token="x").basic() is None
    for bad in ("%%%", b64("nocolon"), b64(":nouser")):
        with pytest.raises(errors.InvalidArgument):
            Credentials(auth=bad).basic()


def test_server_address_limits_where_credentials_go() -> None:
    assert Credentials(username="u").applies_to("anything:5000")
    scoped = Credentials(username="u", server_address="https://index.docker.io/v1/")
    assert scoped.applies_to("registry-1.docker.io")
    assert not scoped.applies_to("127.0.0.1:5000")


def test_fingerprint_differs_by_secret_and_hides_it() -> None:
    a, b = Credentials(username="u", password="p1"), Credentials(username="u", password="p2")
    assert a.fingerprint() != b.fingerprint()
    assert "p1" not in a.fingerprint()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("Reg.Example:5000", "reg.example:5000"),
        ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
        ("gcr.io/project", "gcr.io"),
    ],
)
def test_normalize_host(value: str, expected: str) -> None:
    assert normalize_host(value) == expected


def test_load_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": b64("hub:pw")},
                    "127.0.0.1:5000": {"username": "u", "password": "p"},
                    "ghcr.io": {"identitytoken": "idt"},
                    "quay.io": {"registrytoken": "rt"},
                },
                "credsStore": "ignored",
            }
        )
    )
    creds = load_credentials_file(path)
    assert creds["docker.io"].basic() == ("hub", "pw")
    assert creds["127.0.0.1:5000"] == Credentials(username="u", password="p")
    assert creds["ghcr.io"].identity_token == "idt"
    assert creds["quay.io"].registry_token == "rt"


def test_missing_credentials_file_is_empty(tmp_path: Path) -> None:
    assert load_credentials_file(tmp_path / "none.json") == {}


@pytest.mark.parametrize(
    "content",
    [
        "{",
        '{"auths": []}',
        '{"auths": {"h": {"auth": 5}}}',
        '{"auths": {"h": {"auth": "%%"}}}',
        "[]",
    ],
)
def test_bad_credentials_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(errors.InvalidArgument, match="credentials file"):
        load_credentials_file(path)
