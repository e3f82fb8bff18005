"""Atomic, deterministic writers and provenance records shared by every stage.

Every output is written to a temporary path beside its target and renamed into place, so a killed
job never leaves a file that looks complete. Writers sort keys and avoid timestamps so that the
same inputs give byte-identical files.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from . import __version__


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto the target on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    work = tmp if is_dir else tmp / target.name
    try:
        yield work
        if is_dir:
            work.chmod(0o777 & ~_umask())  # mkdtemp makes folders private; give the usual mode
            if target.exists():
                shutil.rmtree(target)
        os.replace(work, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_parquet(df: pd.DataFrame, target: str | os.PathLike, provenance: dict | None = None) -> None:
    """Write a table atomically; provenance goes into the file's key-value metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if provenance is not None:
        meta = dict(table.schema.metadata or {})
        meta[b"kcircuits"] = json.dumps(provenance, sort_keys=True).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)


def save_npz(target: str | os.PathLike, **arrays) -> None:
    """Numeric arrays as a plain .npz (no pickle: np.load(allow_pickle=False) reads it), atomically."""
    import numpy as np

    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def write_safetensors(tensors: dict, target: str | os.PathLike, header: dict) -> None:
    """Tensors (name -> torch tensor) atomically, with `header` as ONE metadata entry "kcircuits" of
    sorted JSON: safetensors writes several metadata keys in an order that changes between
    processes, which would make equal results differ in bytes."""
    from safetensors.torch import save_file

    with atomic_path(target) as tmp:
        save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, str(tmp),
                  metadata={"kcircuits": json.dumps(header, sort_keys=True)})


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict, list[str]]:
    """The header write_safetensors stored and the tensors' names, sorted (no tensor is read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta, names = fh.metadata() or {}, sorted(fh.keys())
    if "kcircuits" not in meta:
        raise ValueError(f"{path}: no kcircuits header; written by an older version? delete it and rerun")
    return json.loads(meta["kcircuits"]), names


def with_leading_columns(frame: pd.DataFrame, values: dict) -> pd.DataFrame:
    """`frame` with a constant column per item of `values` (e.g. checkpoint metadata), those first."""
    return frame.assign(**values)[list(values) + list(frame.columns)]


def write_jsonl(rows: Iterable[dict], target: str | os.PathLike) -> int:
    n = 0
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
                n += 1
    return n


class TableError(ValueError):
    """An input table is missing, unreadable, empty or lacks columns; the message names the file."""


def check_table(path: str | os.PathLike, columns: Iterable[str] = (), label: str = "table",
                empty_ok: bool = True) -> None:
    """TableError unless `path` is a readable parquet table (read from its metadata only) with
    `columns` and, unless empty_ok, rows. label: how the message names its input (an option)."""
    import pyarrow.parquet as pq

    try:
        dataset = pq.ParquetDataset(str(path))
        names, rows = set(dataset.schema.names), sum(f.metadata.num_rows for f in dataset.fragments)
    except FileNotFoundError:
        raise TableError(f"{label} {path}: no such file") from None
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TableError(f"{label} {path}: not a readable parquet table ({first})") from None
    missing = sorted(set(columns) - names)
    if missing:
        raise TableError(f"{label} {path}: lacks columns {missing} (made by another version of the stage that "
                         "writes it?)")
    if not rows and not empty_ok:
        raise TableError(f"{label} {path}: the table has no rows")


def read_table(path: str | os.PathLike, columns: Iterable[str] = (), label: str = "table",
               empty_ok: bool = True) -> pd.DataFrame:
    """One parquet table; given columns (or empty_ok=False), checked first (check_table)."""
    if columns or not empty_ok:
        check_table(path, columns, label, empty_ok)
    return pd.read_parquet(path)


def read_parquets(paths: Iterable[str | os.PathLike], columns: Iterable[str] = (), label: str = "table",
                  empty_ok: bool = True) -> pd.DataFrame:
    """Several parquet tables (e.g. one per checkpoint or training seed) as one, in the given order,
    each read by read_table."""
    paths = list(paths)
    if not paths:
        raise TableError(f"{label}: no tables given")
    return pd.concat([read_table(p, columns, label, empty_ok) for p in paths], ignore_index=True)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_json(obj: Any, target: str | os.PathLike) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def package_versions(*names: str) -> dict[str, str]:
    out = {"python": platform.python_version(), "kcircuits": __version__}
    for name in ("numpy", "pandas", "pyarrow", *names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(stage: str, seed: int, settings: dict, *packages: str) -> dict:
    """What produced an output: stage, seed, the stage's settings and package versions (no clock)."""
    return {"stage": stage, "seed": seed, "settings": settings, "versions": package_versions(*packages)}
