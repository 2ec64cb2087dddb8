"""``ncsn configs``: the YAML recipes shipped inside the package, one line each, or one in full."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "configs", help="list the packaged configs (ncsn train --config NAME)",
        description="List the YAML configs shipped inside the package: name, data set, network "
                    "(classifier for the configs of ncsn train-classifier --config NAME) and the "
                    "title of each (its leading comment up to the first colon). With "
                    "NAME, print that config's YAML, e.g. to copy and edit it: "
                    "ncsn configs mnist5k_cpu > my.yaml.")
    p.add_argument("name", nargs="?", help="print this packaged config's YAML")
    p.set_defaults(func=run_configs)


def run_configs(args: argparse.Namespace) -> int:
    from ncsn.config import (
        config_title,
        packaged_config_dir,
        packaged_config_names,
        read_config_mapping,
        validate_config,
    )
    from ncsn.errors import UserError
    from ncsn.training.classifier import load_classifier_config

    names = packaged_config_names()
    if args.name is not None:
        name = args.name.removesuffix(".yaml")
        if name not in names:
            raise UserError(f"no packaged config {args.name!r}; packaged: {', '.join(names)}")
        print((packaged_config_dir() / f"{name}.yaml").read_text(), end="")
        return 0
    rows = []
    for name in names:
        path = packaged_config_dir() / f"{name}.yaml"
        raw = read_config_mapping(path)[1]
        if "classifier" in raw:
            data, network = load_classifier_config(path)[1].dataset, "classifier"
        else:
            config = validate_config(raw, str(path))
            data, network = config.data.name, config.model["name"]
        rows.append((name, data, network, config_title(path.read_text())))
    widths = [max(len(row[k]) for row in rows) for k in range(3)]
    print(f"packaged configs in {packaged_config_dir()} (ncsn train --config NAME; classifier: "
          "ncsn train-classifier MODEL --config NAME):")
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)]
        print("  " + "  ".join([*cells, row[3]]))
    return 0
