"""berthctl images: list, pull (with progress), import, rm."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from cri.api.admin.v1 import admin_pb2, admin_pb2_grpc
from cri.api.v1 import api_pb2
from cri.ctl.client import CriClient


def cmd_list(client: CriClient, args: argparse.Namespace) -> int:
    images = client.images.ListImages(api_pb2.ListImagesRequest(), timeout=client.timeout).images
    print(f"{'IMAGE':<60} {'ID':<15} SIZE")
    for image in images:
        names = (
            list(image.repo_tags)
            or [f"<none>@{d.rsplit('@', 1)[-1]}" for d in image.repo_digests]
            or ["<none>"]
        )
        for name in names:
            print(f"{name:<60} {image.id.removeprefix('sha256:')[:13]:<15} {_size(image.size)}")
    return 0


def cmd_pull(client: CriClient, args: argparse.Namespace) -> int:
    admin = admin_pb2_grpc.AdminStub(client.channel)
    bar = ProgressBar(sys.stderr)
    image_id = ""
    for message in admin.PullImage(admin_pb2.PullImageRequest(image=args.image)):
        bar.show(message.layers)
        image_id = message.image_id or image_id
    bar.done()
    print(f"Image is up to date for {image_id}")
    return 0


def cmd_import(client: CriClient, args: argparse.Namespace) -> int:
    admin = admin_pb2_grpc.AdminStub(client.channel)
    path = str(args.file.resolve())
    response = admin.ImportImage(admin_pb2.ImportImageRequest(path=path), timeout=600)
    for image in response.images:
        print(f"imported {', '.join(image.repo_tags) or '<untagged>'} ({image.id})")
    return 0


def cmd_rm(client: CriClient, args: argparse.Namespace) -> int:
    for ref in args.images:
        spec = api_pb2.ImageSpec(image=ref)
        client.images.RemoveImage(api_pb2.RemoveImageRequest(image=spec), timeout=client.timeout)
        print(f"Deleted: {ref}")
    return 0


class ProgressBar:
    """One line per layer, redrawn in place on a terminal; a line per second otherwise."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._drawn = 0
        self._last = 0.0

    def show(self, layers: Sequence[admin_pb2.LayerProgress]) -> None:
        lines = [self._line(p) for p in layers]
        if self._tty:
            self._out.write(f"\x1b[{self._drawn}F" if self._drawn else "")
            self._out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self._drawn = len(lines)
        elif time.monotonic() - self._last >= 1.0:
            done = sum(p.done for p in layers)
            total = sum(p.total for p in layers)
            self._out.write(f"pulling: {_size(done)} / {_size(total)}\n")
            self._last = time.monotonic()
        self._out.flush()

    def done(self) -> None:
        self._out.flush()

    @staticmethod
    def _line(p: admin_pb2.LayerProgress) -> str:
        fraction = p.done / p.total if p.total else 1.0
        filled = int(fraction * 30)
        bar = "#" * filled + "." * (30 - filled)
        short = p.digest.removeprefix("sha256:")[:12]
        return f"{short} [{bar}] {_size(p.done)}/{_size(p.total)}"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.1f}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1000
    return f"{value:.1f}GB"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pathlib import Path

    images = sub.add_parser("images", help="list, pull, import and remove images")
    isub = images.add_subparsers(dest="images_command")
    images.set_defaults(func=cmd_list)
    isub.add_parser("list", help="list images").set_defaults(func=cmd_list)
    pull = isub.add_parser("pull", help="pull an image, showing progress")
    pull.add_argument("image")
    pull.set_defaults(func=cmd_pull)
    imp = isub.add_parser("import", help="import an OCI layout or docker-save tarball")
    imp.add_argument("file", type=Path)
    imp.set_defaults(func=cmd_import)
    rm = isub.add_parser("rm", help="remove images (with all their tags)")
    rm.add_argument("images", nargs="+")
    rm.set_defaults(func=cmd_rm)
