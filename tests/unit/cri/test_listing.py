from __future__ import annotations

import dataclasses

from cri import views
from cri.api.v1 import api_pb2
from cri.listing import EncodedItems
from cri.store import SandboxRecord


def record(sid: str, name: str) -> SandboxRecord:
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="ns", uid=sid),
        labels={"big": "x" * 300},  # long enough that the length takes a 2-byte varint
    )
    return SandboxRecord(id=sid, config=config, runtime_handler="runc", created_at=1)


def test_cached_response_equals_built_response() -> None:
    items: EncodedItems[SandboxRecord] = EncodedItems(views.sandbox_item)
    records = [record(f"id{i}", f"p{i}") for i in range(5)]
    expected = api_pb2.ListPodSandboxResponse(items=[views.sandbox_item(r) for r in records])
    assert items.response(api_pb2.ListPodSandboxResponse, records) == expected
    assert items.response(api_pb2.ListPodSandboxResponse, records) == expected  # from cache


def test_a_changed_record_is_encoded_again() -> None:
    items: EncodedItems[SandboxRecord] = EncodedItems(views.sandbox_item)
    old = record("a", "p")
    items.response(api_pb2.ListPodSandboxResponse, [old])
    new = dataclasses.replace(old, state=api_pb2.SANDBOX_NOTREADY)
    reply = items.response(api_pb2.ListPodSandboxResponse, [new])
    assert reply.items[0].state == api_pb2.SANDBOX_NOTREADY


def test_removed_records_are_forgotten() -> None:
    items: EncodedItems[SandboxRecord] = EncodedItems(views.sandbox_item)
    items.response(api_pb2.ListPodSandboxResponse, [record(f"x{i}", "p") for i in range(400)])
    items.response(api_pb2.ListPodSandboxResponse, [record("y", "p")])
    assert len(items._cache) < 400
