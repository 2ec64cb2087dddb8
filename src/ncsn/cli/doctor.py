"""``ncsn doctor``: versions, the device and threads a run would use, optional parts present or
missing (each missing one with the command that gets it)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor", help="check the installation: versions, device, optional parts",
        description="Print the versions (ncsn, torch, Python, numpy), the device and CPU "
                    "threads training would use, and which optional parts are present (offline "
                    "FID weights, TensorBoard, CUDA, embedded data sets, scipy), with the command "
                    "that gets each missing one. Always exits 0.")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from ncsn.doctor import environment_report

    report = environment_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    c = report["compute"]
    omp = f", OMP_NUM_THREADS={c['OMP_NUM_THREADS']}" if c["OMP_NUM_THREADS"] else ""
    print(f"versions: {versions}")
    print(f"device:   {c['device']} (training.device auto; ncsn sample takes --device)")
    print(f"threads:  torch uses {c['torch_threads']} of {c['cpu_count']} CPUs{omp} "
          f"(training.threads 0); training.threads auto (the demo's) would use "
          f"{c['auto_threads']} now (cores not busy with other processes)")
    print("optional parts:")
    width = max(len(p["name"]) for p in report["parts"])
    for part in report["parts"]:
        mark = "yes" if part["present"] else "no "
        print(f"  {part['name'].ljust(width)}  {mark}  {part['purpose']}: {part['detail']}")
        if part["get"]:
            print(f"  {'':{width}}       get it: {part['get']}")
    return 0
