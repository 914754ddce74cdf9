from __future__ import annotations

from pathlib import Path

import pytest

from cri import config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_are_valid() -> None:
    cfg = config.load(None)
    assert cfg.root == "/var/lib/berth"
    assert cfg.socket == "/run/berth/berth.sock"
    assert cfg.cni.plugin_dirs == ("/opt/cni/bin", "/usr/lib/cni")
    assert cfg.default_runtime == "runc"


def test_file_values_and_nested_tables(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'root = "/srv/berth"\n[cni]\ntimeout = 5\n'
        '[registry.mirrors]\n"docker.io" = ["http://127.0.0.1:5000"]\n'
        '[runtimes.runc]\npath = "/usr/sbin/runc"\noptions = ["--debug"]\n',
    )
    cfg = config.load(path)
    assert cfg.root == "/srv/berth"
    assert cfg.cni.timeout == 5.0
    assert cfg.cni.conf_dir == "/etc/cni/net.d"
    assert cfg.registry.mirrors == {"docker.io": ("http://127.0.0.1:5000",)}
    assert cfg.runtimes["runc"].options == ("--debug",)
    assert "crun" not in cfg.runtimes  # a runtimes table replaces the default set


def test_flag_overrides_win_and_merge_into_tables(tmp_path: Path) -> None:
    path = write(tmp_path, "[cni]\ntimeout = 5\n")
    cfg = config.load(path, {"log_level": "debug", "cni": {"conf_dir": "/x"}, "root": None})
    assert cfg.log_level == "debug"
    assert cfg.cni.conf_dir == "/x"
    assert cfg.cni.timeout == 5.0
    assert cfg.root == "/var/lib/berth"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus = 1\n", "bogus: unknown key"),
        ("[cni]\nconfdir = 'x'\n", "cni.confdir: unknown key"),
        ("root = 3\n", "root: expected str"),
        ("[cni]\ntimeout = 'soon'\n", "cni.timeout: expected float"),
        ("[registry]\nmax_concurrent_downloads = true\n", "expected an integer"),
        ("log_level = 'loud'\n", "log_level: 'loud' is not one of"),
        ("cgroup_driver = 'both'\n", "cgroup_driver"),
        ("root = 'relative/dir'\n", "root: 'relative/dir' must be an absolute path"),
        ("streaming_address = 'localhost'\n", "streaming_address"),
        ("metrics_address = '1.2.3.4:99999'\n", "metrics_address"),
        ("default_runtime = 'kata'\n", "default_runtime: no runtime handler named 'kata'"),
        ("[runtimes.runc]\npath = '/nonexistent/runc'\n", "runtimes.runc.path"),
        ("[cni]\ntimeout = -1\n", "cni.timeout: must be positive"),
        ("cni = 3\n", "cni: expected a table"),
        ("pinned_images = 'busybox'\n", "pinned_images: expected a list"),
        ("root = \n", "config file"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(")):
        config.load(write(tmp_path, text))


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")


def test_missing_default_file_means_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    assert config.load(tmp_path / "absent.toml") == config.Config()


def test_to_dict_round_trips_through_load(tmp_path: Path) -> None:
    from tests.support.berthd import write_config

    cfg = config.Config(root="/r", pinned_images=("a",))
    path = write_config(tmp_path / "c.toml", cfg.to_dict())
    assert config.load(path) == cfg


def test_the_systemd_driver_gives_every_runtime_its_flag(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'cgroup_driver = "systemd"\n'
        '[runtimes.runc]\npath = "/usr/sbin/runc"\noptions = ["--debug"]\n',
    )
    cfg = config.load(path)
    assert cfg.runtime_options("runc") == ("--systemd-cgroup", "--debug")
    assert config.load(None).runtime_options("runc") == ()
