"""Image references: parsing and Docker-style normalisation.

Grammar (as in the distribution project's reference package)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] component ("/" component)*
    domain     := host [":" port]        host := dns-name | "[" ipv6 "]"
    component  := [a-z0-9]+ (separator [a-z0-9]+)*     separator := "." | "_" | "__" | "-"+
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}

The first component is a domain only if it contains "." or ":", is
"localhost", or has upper case letters; otherwise the name lives on docker.io,
and a one-component docker.io name gains "library/".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from snapshotter import errors
from snapshotter.descriptors import validate_digest

DOCKER_DOMAIN: Final = "docker.io"
_LEGACY_DOCKER_DOMAINS: Final = frozenset({"index.docker.io", "registry-1.docker.io"})
MAX_NAME_LENGTH: Final = 255
_MAX_INPUT: Final = 4096

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:.]+\])(?::[0-9]{{1,5}})?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_HEX64 = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    """A fully qualified image reference; at least one of tag and digest is set."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    @property
    def object(self) -> str:
        """What to ask the registry's manifests endpoint for: the digest if known, else the tag."""
        if self.digest is not None:
            return self.digest
        assert self.tag is not None
        return self.tag

    def with_digest(self, digest: str) -> Reference:
        """`name@digest` — the form of a repo digest."""
        return Reference(domain=self.domain, path=self.path, tag=None, digest=digest)


def parse(ref: str) -> Reference:
    """Parse and normalise `ref`; "busybox" becomes docker.io/library/busybox:latest.

    The tag defaults to "latest" only when there is no digest. Raises
    InvalidArgument, naming the reference, when it is malformed.
    """
    if not ref or len(ref) > _MAX_INPUT:
        raise errors.InvalidArgument(f"invalid image reference {ref[:100]!r}: empty or too long")
    rest, _, digest = ref.partition("@")
    if digest:
        _check_digest(ref, digest)
    elif ref.endswith("@"):
        raise errors.InvalidArgument(f"invalid image reference {ref!r}: empty digest")
    name, tag = _split_tag(ref, rest)
    domain, path = _split_domain(ref, name)
    if len(domain) + 1 + len(path) > MAX_NAME_LENGTH:
        raise errors.InvalidArgument(
            f"invalid image reference {ref[:100]!r}: name longer than {MAX_NAME_LENGTH}"
        )
    if tag is None and not digest:
        tag = "latest"
    return Reference(domain=domain, path=path, tag=tag, digest=digest or None)


def _check_digest(ref: str, digest: str) -> None:
    try:
        validate_digest(digest)
    except errors.InvalidArgument as exc:
        raise errors.InvalidArgument(f"invalid image reference {ref!r}: {exc}") from None


def _split_tag(ref: str, rest: str) -> tuple[str, str | None]:
    colon = rest.rfind(":")
    if colon <= rest.rfind("/"):
        return rest, None
    name, tag = rest[:colon], rest[colon + 1 :]
    if not _TAG.fullmatch(tag):
        raise errors.InvalidArgument(f"invalid image reference {ref!r}: bad tag {tag!r}")
    return name, tag


def _split_domain(ref: str, name: str) -> tuple[str, str]:
    first, slash, remainder = name.partition("/")
    if slash and _looks_like_domain(first):
        domain, path = first, remainder
        if not _DOMAIN.fullmatch(domain):
            raise errors.InvalidArgument(f"invalid image reference {ref!r}: bad domain {domain!r}")
    else:
        domain, path = DOCKER_DOMAIN, name
    if domain in _LEGACY_DOCKER_DOMAINS:
        domain = DOCKER_DOMAIN
    _check_path(ref, path)
    if domain == DOCKER_DOMAIN and "/" not in path:
        path = f"library/{path}"
    return domain, path


def _looks_like_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first.lower() != first


def _check_path(ref: str, path: str) -> None:
    if _PATH.fullmatch(path):
        if _HEX64.fullmatch(path):
            raise errors.InvalidArgument(
                f"invalid image reference {ref!r}: a 64-hex string is an image id, not a name"
            )
        return
    if path.lower() != path and _PATH.fullmatch(path.lower()):
        raise errors.InvalidArgument(
            f"invalid image reference {ref!r}: repository name must be lowercase"
        )
    raise errors.InvalidArgument(f"invalid image reference {ref!r}: bad repository {path!r}")


def is_image_id(s: str) -> bool:
    """True for "sha256:<64 hex>" or bare 64 hex — an image id rather than a name."""
    return bool(_HEX64.fullmatch(s.removeprefix("sha256:")))
