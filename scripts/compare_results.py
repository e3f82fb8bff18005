#!/usr/bin/env python3
"""Compare two results folders of one run, as a refactoring must leave them: equal outputs.

    python scripts/compare_results.py results/default /elsewhere/results/default [--skip GLOB ...]

Every file but logs and benchmarks (which hold times) is compared: parquet tables by their data
(columns, dtypes, values, exactly) and their schema metadata with `provenance` left out; JSON files
with every `provenance` key left out; everything else (Markdown, figures, safetensors, npz, JSONL,
tokenizer files) byte for byte -- the project writes figures and checkpoints without timestamps.
Wall-clock measurements differ from run to run and are left out: JSON keys and table columns named
like TIMING (a trainer's train_runtime and *_per_second, a timing table's seconds); a figure drawn from
them can be left out with --skip (a glob on the relative path, e.g. 'figures/reckoning_timing.*').
Prints one line per difference and exits 1 when there is any (0: equal).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

SKIP = {"logs", "benchmarks", "scratch", "tensorboard"}  # times, resumable saves, event files
TIMING = re.compile(r"runtime|per_second|^seconds")  # wall-clock fields (seconds, seconds_per_question, ...)


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and not SKIP & set(p.relative_to(root).parts)}


def without_provenance(value):
    """value without its provenance and wall-clock keys."""
    if isinstance(value, dict):
        return {k: without_provenance(v) for k, v in value.items() if k != "provenance" and not TIMING.search(k)}
    if isinstance(value, list):
        return [without_provenance(v) for v in value]
    return value


def parquet_metadata(path: Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    out = {}
    for key, raw in meta.items():
        if key == b"pandas":
            continue
        try:
            out[key.decode()] = without_provenance(json.loads(raw))
        except ValueError:
            out[key.decode()] = raw.decode(errors="replace")
    return without_provenance(out)


def differs(a: Path, b: Path) -> str | None:
    """Why two files differ, or None."""
    if a.suffix == ".parquet":
        left, right = (pd.read_parquet(p) for p in (a, b))
        left, right = (t.drop(columns=[c for c in t.columns if TIMING.search(str(c))]) for t in (left, right))
        try:
            pd.testing.assert_frame_equal(left, right, check_exact=True)
        except AssertionError as err:
            return "table: " + " ".join(str(err).split())[:300]
        if parquet_metadata(a) != parquet_metadata(b):
            return "parquet metadata (provenance left out)"
        return None
    if a.suffix == ".json":
        left, right = (without_provenance(json.loads(p.read_text(encoding="utf-8"))) for p in (a, b))
        return None if left == right else "JSON (provenance left out)"
    return None if a.read_bytes() == b.read_bytes() else "bytes"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--skip", action="append", default=[], help="leave out paths matching this glob")
    args = parser.parse_args(argv)
    before, after = ({f for f in files(root) if not any(fnmatch.fnmatch(f, g) for g in args.skip)}
                     for root in (args.before, args.after))
    problems = [f"only in {args.before}: {f}" for f in sorted(before - after)]
    problems += [f"only in {args.after}: {f}" for f in sorted(after - before)]
    for name in sorted(before & after):
        why = differs(args.before / name, args.after / name)
        if why:
            problems.append(f"differs: {name}: {why}")
    print("\n".join(problems) or f"equal: {len(before & after)} files")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
