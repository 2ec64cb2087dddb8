"""``ncsn pretrained``: the models shipped inside the package (``pretrained:NAME``)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("pretrained", help="list the models shipped inside the package",
                       description="The pretrained models that ship with ncsn: load one with "
                                   "ncsn.load('pretrained:NAME') or ncsn sample pretrained:NAME "
                                   "-n 64 --out DIR. Each lists what trained it and how good "
                                   "its samples are.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ncsn.nets.pretrained import pretrained_names, pretrained_summary

    del args
    names = pretrained_names()
    if not names:
        print("no pretrained models in this installation")
    for name in names:
        info = pretrained_summary(name)
        lines = [f"pretrained:{name}: {info.get('title', '')}".rstrip(": ")]
        for key in ("quality", "trained", "command", "commit", "weights_sha256"):
            if key in info:
                lines.append(f"    {key}: {info[key]}")
        print("\n".join(lines))
    return 0
