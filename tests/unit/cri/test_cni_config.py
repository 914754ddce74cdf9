from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cri.cni.config import ConfigInvalid, fingerprint, load_file, select_network
from cri.cni.default import DEFAULT_CONFLIST, DEFAULT_FILE_NAME, install_default


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("bridge", "portmap"):
        (directory / name).write_text("#!/bin/sh\n")
        (directory / name).chmod(0o755)
    (directory / "notexec").write_text("")
    return directory


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "net.d"
    directory.mkdir()
    return directory


def _write(directory: Path, name: str, body: Any) -> Path:
    path = directory / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def _list(name: str, *types: str, version: str = "1.0.0") -> dict[str, Any]:
    return {"cniVersion": version, "name": name, "plugins": [{"type": t} for t in types]}


def test_first_valid_file_by_name_wins(conf_dir: Path, plugin_dir: Path) -> None:
    _write(conf_dir, "30-c.conflist", _list("c", "bridge"))
    _write(conf_dir, "20-b.conflist", _list("b", "bridge", "portmap"))
    _write(conf_dir, "10-a.conflist", "{not json")
    _write(conf_dir, "05-ignored.txt", _list("txt", "bridge"))
    selection = select_network(conf_dir, [plugin_dir])
    assert selection.network is not None and selection.network.name == "b"
    assert [p.type for p in selection.network.plugins] == ["bridge", "portmap"]
    assert len(selection.problems) == 1 and selection.problems[0].startswith("10-a.conflist")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}, "invalid network name"),
        ({"name": "n", "plugins": [{"type": "bridge"}]}, "no cniVersion"),
        ({"name": "n", "cniVersion": "1.0", "plugins": [{"type": "bridge"}]}, "not a version"),
        ({"name": "n", "cniVersion": "1.0.0", "plugins": []}, "no plugins"),
        ({"name": "n", "cniVersion": "1.0.0", "plugins": [{"bridge": "x"}]}, "no valid type"),
        (_list("n", "bridge", "missing"), "['missing'] not found"),
        (_list("n", "notexec"), "['notexec'] not found"),
        (_list("n", "../bin/bridge"), "no valid type"),
        ({"name": "n", "cniVersions": ["9.9.9"], "plugins": [{"type": "bridge"}]}, "supported"),
        (["not", "an", "object"], "not a JSON object"),
    ],
)
def test_invalid_configs_are_skipped_with_a_reason(
    conf_dir: Path, plugin_dir: Path, body: Any, problem: str
) -> None:
    _write(conf_dir, "10-bad.conflist", body)
    selection = select_network(conf_dir, [plugin_dir])
    assert selection.network is None
    [reported] = selection.problems
    assert problem in reported


def test_single_plugin_conf_is_wrapped(conf_dir: Path, plugin_dir: Path) -> None:
    single = {"cniVersion": "0.4.0", "name": "solo", "type": "bridge", "bridge": "b1"}
    _write(conf_dir, "10-solo.conf", single)
    network = select_network(conf_dir, [plugin_dir]).network
    assert network is not None
    assert (network.name, network.cni_version) == ("solo", "0.4.0")
    assert network.plugins[0].raw["bridge"] == "b1"


def test_json_file_holding_a_conflist_is_accepted(conf_dir: Path) -> None:
    network = load_file(_write(conf_dir, "x.json", _list("j", "bridge")))
    assert network.name == "j"


def test_cni_versions_list_picks_highest_supported(conf_dir: Path) -> None:
    body = {"cniVersions": ["0.4.0", "1.1.0", "7.0.0"], "name": "v", "plugins": [{"type": "b"}]}
    assert load_file(_write(conf_dir, "v.conflist", body)).cni_version == "1.1.0"


def test_capabilities_only_true_ones(conf_dir: Path) -> None:
    body = _list("n", "portmap")
    body["plugins"][0]["capabilities"] = {"portMappings": True, "bandwidth": False, "x": "yes"}
    network = load_file(_write(conf_dir, "n.conflist", body))
    assert network.plugins[0].capabilities == {"portMappings"}


def test_load_file_errors(conf_dir: Path) -> None:
    with pytest.raises(ConfigInvalid, match="cannot read"):
        load_file(conf_dir / "missing.conflist")


def test_missing_conf_dir_gives_no_network(tmp_path: Path, plugin_dir: Path) -> None:
    selection = select_network(tmp_path / "absent", [plugin_dir])
    assert selection.network is None and selection.problems == ()


def test_fingerprint_sees_edits_new_files_and_new_plugins(conf_dir: Path, plugin_dir: Path) -> None:
    stamps = [fingerprint(conf_dir, [plugin_dir])]
    path = _write(conf_dir, "10-a.conflist", _list("a", "bridge"))
    stamps.append(fingerprint(conf_dir, [plugin_dir]))
    path.write_text(json.dumps(_list("a", "bridge", "portmap")))
    stamps.append(fingerprint(conf_dir, [plugin_dir]))
    (plugin_dir / "tuning").write_text("")
    stamps.append(fingerprint(conf_dir, [plugin_dir]))
    (conf_dir / "dangling.conf").symlink_to(conf_dir / "nowhere")
    stamps.append(fingerprint(conf_dir, [plugin_dir]))
    assert len(set(stamps[:4])) == 4
    assert stamps[4] == stamps[3]  # a dangling link is no config


def test_install_default_writes_only_into_an_empty_dir(conf_dir: Path, plugin_dir: Path) -> None:
    path = install_default(conf_dir)
    assert path == conf_dir / DEFAULT_FILE_NAME
    assert json.loads(path.read_text()) == DEFAULT_CONFLIST
    network = select_network(conf_dir, [plugin_dir]).network
    assert network is not None and network.name == "berth"
    assert [p.type for p in network.plugins] == ["bridge", "portmap"]
    path.write_text(json.dumps(_list("mine", "bridge")))
    assert install_default(conf_dir) == path
    assert json.loads(path.read_text())["name"] == "mine"
