"""berthctl: berth's admin command line, speaking CRI to berthd's socket."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import grpc
from google.protobuf import json_format

from cri.api.v1 import api_pb2
from cri.ctl import demo, images
from cri.ctl.client import DEFAULT_ENDPOINT, CriClient

Command = Callable[[CriClient, argparse.Namespace], int]


def cmd_version(client: CriClient, args: argparse.Namespace) -> int:
    v = client.runtime.Version(api_pb2.VersionRequest(), timeout=client.timeout)
    print(f"Version:  {v.version}")
    print(f"RuntimeName:  {v.runtime_name}")
    print(f"RuntimeVersion:  {v.runtime_version}")
    print(f"RuntimeApiVersion:  {v.runtime_api_version}")
    return 0


def cmd_info(client: CriClient, args: argparse.Namespace) -> int:
    resp = client.runtime.Status(api_pb2.StatusRequest(verbose=True), timeout=client.timeout)
    out = json_format.MessageToDict(resp, preserving_proto_field_name=False)
    out.pop("info", None)
    for key, value in resp.info.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="berthctl", description="berth admin CLI")
    p.add_argument("--endpoint", "-r", default=DEFAULT_ENDPOINT, help="berthd CRI socket")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="show the runtime's name and versions").set_defaults(
        func=cmd_version
    )
    sub.add_parser("info", help="show conditions, handlers and the effective config").set_defaults(
        func=cmd_info
    )
    images.register(sub)
    demo.register(sub)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    command: Command = args.func
    try:
        with CriClient(args.endpoint, timeout=args.timeout) as client:
            sys.exit(command(client, args))
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        print(
            f"berthctl: {args.command}: {code.name if code else 'error'}: {detail}", file=sys.stderr
        )
        sys.exit(1)
