"""argv, environment and working directory precedence (cri.oci.process)."""

from __future__ import annotations

from typing import Any

import pytest

from cri import errors
from cri.api.v1 import api_pb2
from cri.oci import process
from tests.unit.cri.oci.helpers import container_config


@pytest.mark.parametrize(
    ("command", "args", "image", "expected"),
    [
        # Image only: Entrypoint + Cmd.
        ([], [], {"Entrypoint": ["/init"], "Cmd": ["-v"]}, ["/init", "-v"]),
        # CRI args replace Cmd, keep Entrypoint.
        ([], ["-q"], {"Entrypoint": ["/init"], "Cmd": ["-v"]}, ["/init", "-q"]),
        # CRI command replaces Entrypoint and drops the image Cmd.
        (["sh"], [], {"Entrypoint": ["/init"], "Cmd": ["-v"]}, ["sh"]),
        # CRI command and args: nothing from the image.
        (["sh"], ["-c", "true"], {"Entrypoint": ["/init"], "Cmd": ["-v"]}, ["sh", "-c", "true"]),
        # An Entrypoint of [""] means none.
        ([], [], {"Entrypoint": [""], "Cmd": ["top"]}, ["top"]),
        # Null lists in the image config.
        ([], ["echo"], {"Entrypoint": None, "Cmd": None}, ["echo"]),
        ([], [], {"Cmd": ["sleep", "9"]}, ["sleep", "9"]),
    ],
)
def test_args_follow_docker_rules(
    command: list[str], args: list[str], image: dict[str, Any], expected: list[str]
) -> None:
    config = container_config(command=command, args=args)
    assert process.process_args(config, image) == expected


@pytest.mark.parametrize("image", [{}, {"Entrypoint": [""]}, {"Cmd": [], "Entrypoint": None}])
def test_no_command_is_invalid_argument(image: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidArgument, match="no command specified"):
        process.process_args(container_config(), image)


def test_malformed_image_cmd_is_invalid_argument() -> None:
    with pytest.raises(errors.InvalidArgument, match="Cmd"):
        process.process_args(container_config(), {"Cmd": "sh -c true"})


def _envs(**pairs: str) -> list[api_pb2.KeyValue]:
    return [api_pb2.KeyValue(key=k, value=v.encode()) for k, v in pairs.items()]


@pytest.mark.parametrize(
    ("image_env", "cri_env", "expected"),
    [
        # Defaults alone.
        ([], {}, ["PATH=" + process.DEFAULT_PATH, "HOSTNAME=h"]),
        # The image's PATH replaces the default in place; its other entries follow.
        (["PATH=/bin", "A=1"], {}, ["PATH=/bin", "HOSTNAME=h", "A=1"]),
        # CRI envs win over the image's, keeping the position.
        (
            ["A=1", "B=2"],
            {"A": "cri"},
            ["PATH=" + process.DEFAULT_PATH, "HOSTNAME=h", "A=cri", "B=2"],
        ),
        # CRI may set HOSTNAME and PATH too.
        ([], {"HOSTNAME": "x", "PATH": "/p"}, ["PATH=/p", "HOSTNAME=x"]),
        # An image entry without "=" unsets the name.
        (["A=1", "A"], {"C": "3"}, ["PATH=" + process.DEFAULT_PATH, "HOSTNAME=h", "C=3"]),
        # Values may contain "=".
        ([], {"Q": "a=b"}, ["PATH=" + process.DEFAULT_PATH, "HOSTNAME=h", "Q=a=b"]),
    ],
)
def test_env_precedence(image_env: list[str], cri_env: dict[str, str], expected: list[str]) -> None:
    config = container_config(envs=_envs(**cri_env))
    assert process.process_env(config, {"Env": image_env}, "h") == expected


def test_env_value_bytes_are_decoded_leniently() -> None:
    config = container_config(envs=[api_pb2.KeyValue(key="B", value=b"caf\xc3\xa9 \xff")])
    assert process.process_env(config, {}, "h")[-1] == "B=café \ufffd"


@pytest.mark.parametrize("key", ["", "A=B"])
def test_env_bad_name_is_invalid_argument(key: str) -> None:
    config = container_config(envs=[api_pb2.KeyValue(key=key, value=b"v")])
    with pytest.raises(errors.InvalidArgument):
        process.process_env(config, {}, "h")


@pytest.mark.parametrize(
    ("working_dir", "image", "expected"),
    [
        ("/work", {"WorkingDir": "/img"}, "/work"),
        ("", {"WorkingDir": "/img"}, "/img"),
        ("", {"WorkingDir": ""}, "/"),
        ("", {}, "/"),
    ],
)
def test_cwd_precedence(working_dir: str, image: dict[str, Any], expected: str) -> None:
    assert process.process_cwd(container_config(working_dir=working_dir), image) == expected


def test_relative_cwd_is_invalid_argument() -> None:
    with pytest.raises(errors.InvalidArgument, match="absolute"):
        process.process_cwd(container_config(working_dir="work"), {})


def test_image_user() -> None:
    assert process.image_user({"User": "1000:1000"}) == "1000:1000"
    assert process.image_user({}) == ""
    with pytest.raises(errors.InvalidArgument):
        process.image_user({"User": 1000})
