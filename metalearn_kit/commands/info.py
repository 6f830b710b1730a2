"""``metalearn-kit info``: versions, device and profile."""

from __future__ import annotations

import argparse
import json

from .. import __version__
from ..config import describe_machine, get_device, get_profile

__all__ = ["configure_parser", "main"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def main(args: argparse.Namespace) -> int:
    info = {"metalearn_kit": __version__, "device": str(get_device()), "profile": get_profile(),
            **describe_machine()}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>14}: {value}")
    return 0
