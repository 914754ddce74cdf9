from __future__ import annotations

import pytest

from e2e.bench.external import EndpointSpec, parse_endpoint


def test_parse_endpoint() -> None:
    assert parse_endpoint("crio=unix:///run/crio/crio.sock") == EndpointSpec(
        name="crio", endpoint="unix:///run/crio/crio.sock"
    )
    assert parse_endpoint("c=/run/c.sock,pid=7") == EndpointSpec(
        name="c", endpoint="unix:///run/c.sock", pid=7
    )


@pytest.mark.parametrize("text", ["nothing", "=unix:///x", "a=", "a=/x,user=1", "a=/x,pid=x"])
def test_bad_endpoints(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not|only pid"):
        parse_endpoint(text)
