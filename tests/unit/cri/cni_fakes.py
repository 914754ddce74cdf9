"""Fake CNI plugins: tiny shell scripts that record every call and answer as a test says.

Each call leaves ``<log>/<seq>.<plugin>.<COMMAND>.env`` (the CNI_* and PATH variables) and
``.stdin`` (the config). A plugin's answer to a command comes from a shell snippet the test
installs (``behaviour={"ADD": "printf ..."}``); without one it prints nothing and exits 0.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCRIPT = """#!/bin/sh
log='{log}'
name=$(basename "$0")
seq=$(cat "$log/seq" 2>/dev/null || echo 0)
seq=$((seq + 1))
echo "$seq" > "$log/seq"
base="$log/$(printf '%04d' "$seq").$name.$CNI_COMMAND"
cat > "$base.stdin"
env | grep -E '^(CNI_|PATH=)' > "$base.env"
snippet="$log/$name.$CNI_COMMAND.sh"
if [ -f "$snippet" ]; then . "$snippet"; fi
exit 0
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    plugin: str
    command: str
    env: dict[str, str]
    stdin: dict[str, Any]


def result_json(*ips: str, version: str = "1.0.0", netns: str = "/x") -> str:
    """A plugin result: one sandbox interface holding ``ips``."""
    entries = [{"address": ip, "interface": 0} for ip in ips]
    return json.dumps(
        {
            "cniVersion": version,
            "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": netns}],
            "ips": entries,
        }
    )


def prints(text: str, status: int = 0) -> str:
    """A snippet that prints ``text`` and exits with ``status``."""
    quoted = text.replace("'", "'\\''")
    return f"printf '%s' '{quoted}'\nexit {status}\n"


class FakePlugins:
    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.log = root / "log"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.log.mkdir(parents=True, exist_ok=True)

    def install(self, name: str, **behaviour: str) -> Path:
        path = self.bin / name
        path.write_text(_SCRIPT.format(log=self.log))
        path.chmod(0o755)
        for command, snippet in behaviour.items():
            self.behave(name, command, snippet)
        return path

    def behave(self, name: str, command: str, snippet: str) -> None:
        (self.log / f"{name}.{command}.sh").write_text(snippet)

    def calls(self) -> list[Call]:
        found: list[Call] = []
        for env_file in sorted(self.log.glob("*.env")):
            _, plugin, command = env_file.name[: -len(".env")].split(".", 2)
            stdin = env_file.with_suffix(".stdin").read_text()
            env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
            found.append(
                Call(plugin=plugin, command=command, env=env, stdin=json.loads(stdin or "{}"))
            )
        return found

    def forget(self) -> None:
        """Drop the recorded calls (behaviour snippets stay)."""
        for path in self.log.iterdir():
            if path.suffix in (".env", ".stdin") or path.name == "seq":
                os.unlink(path)
