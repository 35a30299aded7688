"""A batch engine that maps one job over work items, locally or on a Ray Data actor pool.

It knows no task. A job (the `Job` protocol below: features, speaker and pseudo-labels each
define one) says how to load its model, read one item and process a batch of read items; the
engine runs it over `blocks` of items and returns {key: row} plus {key: reason} for the items
that could not be read or processed. `compute` (params.yaml's section) picks where it runs:

- `local` (default): one process, the model loaded once, blocks in order, each finished block
  checkpointed (resumable after a kill). Ray is never imported.
- `ray`: the same blocks as items of a Ray Data dataset, `map_batches` over an actor pool (each
  actor loads the model once; one GPU per actor on CUDA), results keyed by item and merged on the
  driver, which checkpoints them as they stream in. The cluster comes from `RAY_ADDRESS` or
  `compute.ray_address`, else a local Ray instance is started (docs/SCALING.md).

Both run the same blocks through the same `process_block`, so they give the same rows. An item
that fails to read or to process is a skipped row with its reason in both, never a failed
(cluster) job; the caller then reports it in one line naming the item (`Extraction.stacked`).

Thread sizing (`thread_count`, `set_threads`): torch's intra- and inter-op pools are sized from
the CPUs this process may use (`os.sched_getaffinity`), `compute.threads`, or FAIRSER_THREADS
(which wins); numpy's BLAS gets one thread (its products here are tiny).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from fairser.errors import InputError, ParamsError

ENGINES = ("local", "ray")
THREADS_ENV = "FAIRSER_THREADS"
DEFAULT_COMPUTE = {"engine": "local", "threads": None, "ray_address": None, "ray_workers": None}


# ----------------------------------------------------------------------------- threads


def affinity_count() -> int:
    """CPUs this process may run on (its affinity mask; os.cpu_count() where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def thread_count(setting: int | None = None) -> int:
    """Torch threads for this process: FAIRSER_THREADS if set, else `setting` (compute.threads),
    else the affinity count. A bad FAIRSER_THREADS is one line naming it."""
    env = os.environ.get(THREADS_ENV)
    if env not in (None, ""):
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ParamsError(f"environment: {THREADS_ENV}={env!r}; expected an integer >= 1")
        return n
    return affinity_count() if setting is None else int(setting)


def set_threads(n: int) -> None:
    """Size torch's intra-op pool to `n` and its inter-op pool to `n` (the latter only before any
    parallel work has started; torch refuses later, and the intra-op size is what matters here),
    and numpy/scipy's BLAS to one thread.

    Why one for BLAS: the stages' numpy products are tiny (resemblyzer's mel filterbank is a
    40 x 201 by 201 x T product per clip), and OpenBLAS threads spin-wait for a busy core: at load
    average 8 on 2 cores, that product took 33 ms per clip with OpenBLAS's default threads and
    0.2 ms with one (docs/PERFORMANCE.md).
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # already used or already set in this process
        pass
    threadpool_limits(limits=1, user_api="blas")


def configure(compute: dict | None) -> int:
    """Apply the `compute` section's thread count; returns it. Called by every stage at start."""
    n = thread_count((compute or {}).get("threads"))
    set_threads(n)
    return n


# ----------------------------------------------------------------------------- jobs


class Job(Protocol):
    """What the engine runs. A job is sent to every Ray actor, so it holds plain values (a frozen
    dataclass of the model's name, device, revision...) and its methods do the work.

    name: what it computes, for the progress bar and failure reasons (`features`, `speaker`);
    device: the params value (auto | cpu | cuda); on `cuda`, or `auto` on a cluster with GPUs,
    each Ray actor gets one GPU.
    """

    name: str
    device: str

    def load(self) -> Any:
        """The model, loaded once per process (or per Ray actor)."""

    def read(self, source: str) -> Any:
        """One item's input from its source (a clip's path); raising makes the item a skipped row
        `undecodable (...)`, not a failed run."""

    def process(self, model: Any, inputs: list) -> tuple[list, list]:
        """(rows, reasons) for a batch of read inputs: reasons[i] is None for a good row, else
        why item i has none."""


def decode_reason(err: BaseException, source: str) -> str:
    """A skip reason that is the same on every machine: the source's folder is cut out."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text.replace(str(source), Path(source).name)
    return f"undecodable ({type(err).__name__}{': ' + text[:200] if text else ''})"


def process_block(job: Job, model, sources: list[str]):
    """Read and process one block of items: (rows, reasons), one entry per source.

    An item that fails to read gets a reason and no row; the others go through the job's
    batched pass together. rows[i] is a numpy array or None.
    """
    inputs, reasons = [], []
    for source in sources:
        try:
            inputs.append(job.read(source))
            reasons.append(None)
        except Exception as err:  # noqa: BLE001 (any reader failure is this item's, not the job's)
            inputs.append(None)
            reasons.append(decode_reason(err, source))
    good = [i for i, x in enumerate(inputs) if x is not None]
    rows: list = [None] * len(sources)
    if good:
        out, why = _batched_or_one_by_one(job, model, [inputs[i] for i in good])
        for j, i in enumerate(good):
            if why[j] is None:
                rows[i] = np.asarray(out[j])
            else:
                reasons[i] = why[j]
    return rows, reasons


def _batched_or_one_by_one(job: Job, model, inputs: list):
    """The job's batched pass; if it raises, the block again one item at a time, so the item
    that breaks the model gets the reason (`<job> (<model>) failed (<error>)`) and the others
    their rows."""
    try:
        return job.process(model, inputs)
    except Exception:  # noqa: BLE001 (which item failed is found below)
        if len(inputs) == 1:
            return [None], [_failure(job, model)]
    rows, reasons = [], []
    for x in inputs:
        try:
            out, why = job.process(model, [x])
            rows.append(out[0])
            reasons.append(why[0])
        except Exception:  # noqa: BLE001 (this item's failure, reported with its name)
            rows.append(None)
            reasons.append(_failure(job, model))
    return rows, reasons


def _failure(job: Job, model) -> str:
    """`<job> (<model name>) failed (<Type>: <first line>)` for the exception being handled."""
    import sys

    err = sys.exc_info()[1]
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return (f"{job.name} ({getattr(model, 'name', type(model).__name__)}) failed "
            f"({type(err).__name__}{': ' + first if first else ''})")


# ----------------------------------------------------------------------------- checkpoints


def save_chunk(folder: Path, number: int, keys, rows: np.ndarray) -> None:
    """Checkpoint one finished block: `keys` and their `rows`, written atomically."""
    path = folder / f"chunk_{number:06d}.npz"
    tmp = folder / f".chunk_{number:06d}.tmp.npz"
    np.savez(tmp, files=np.asarray(keys, dtype=str), features=rows)
    os.replace(tmp, path)  # a killed run never leaves a chunk that looks complete


def load_chunks(folder: Path, row_shape: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
    """{key: row} from every checkpoint chunk in `folder`; chunks whose rows are not of
    `row_shape` (when given) are ignored."""
    done: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob("chunk_*.npz")):
        with np.load(path, allow_pickle=False) as z:
            keys, rows = z["files"], z["features"]
        if row_shape is not None and rows.shape[1:] != tuple(row_shape):
            continue
        done.update(zip(keys.tolist(), rows))
    return done


# ----------------------------------------------------------------------------- results


@dataclass
class Extraction:
    """Rows by key, the items without a row with their reasons, and each item's source."""

    rows: dict[str, np.ndarray]
    skipped: dict[str, str]
    sources: dict[str, str]

    def stacked(self, keys) -> np.ndarray:
        """Rows in `keys` order; a skipped item is one InputError naming its source and reason."""
        bad = [k for k in keys if k in self.skipped]
        if bad:
            more = f" ({len(bad)} clips failed; the others are done and checkpointed)" if len(bad) > 1 else ""
            raise InputError(f"{self.sources[bad[0]]}: {self.skipped[bad[0]]}{more}")
        return np.stack([self.rows[k] for k in keys])


def run(job: Job, keys, sources, blocks: list[list[int]], *, compute: dict | None = None,
        model=None, partial_dir: str | Path | None = None, weights=None, progress: bool = True,
        desc: str | None = None, unit: str = "clip") -> Extraction:
    """Apply `job` to every item, block by block: item i is keyed `keys[i]` and read from
    `sources[i]` (job.read).

    blocks: lists of indices into `keys` covering each item once; a block is one checkpoint
    chunk and one Ray item, and its items go through the job's batched pass together.
    compute: params.yaml's `compute` section (engine, threads, ray_address, ray_workers).
    model: an already loaded model for the local engine (else job.load() is called once).
    partial_dir: checkpoint folder (save_chunk / load_chunks); items it holds are not redone.
    weights: per-item progress amounts (e.g. samples), default 1 each.
    """
    compute = {**DEFAULT_COMPUTE, **(compute or {})}
    keys = list(keys)
    sources = [str(s) for s in sources]
    if len(sources) != len(keys):
        raise ValueError(f"{len(keys)} keys but {len(sources)} sources")
    partial_dir = Path(partial_dir) if partial_dir is not None else None
    done: dict[str, np.ndarray] = {}
    if partial_dir is not None:
        partial_dir.mkdir(parents=True, exist_ok=True)
        done = load_chunks(partial_dir)
    todo_blocks = [[i for i in b if keys[i] not in done] for b in blocks]
    todo_blocks = [b for b in todo_blocks if b]
    weights = np.ones(len(keys)) if weights is None else np.asarray(weights)
    total = float(weights.sum())
    left = float(sum(weights[i] for b in todo_blocks for i in b))
    bar = tqdm(total=total, initial=total - left, unit=unit, unit_scale=unit != "clip",
               desc=desc or job.name, disable=not progress)
    skipped: dict[str, str] = {}
    number = len(list(partial_dir.glob("chunk_*.npz"))) if partial_dir is not None else 0
    index = {k: i for i, k in enumerate(keys)}

    def collect(names, rows, reasons):
        nonlocal number
        good = [(n, r) for n, r, why in zip(names, rows, reasons) if why is None]
        skipped.update((n, why) for n, why in zip(names, reasons) if why is not None)
        if partial_dir is not None and good:
            save_chunk(partial_dir, number, [n for n, _ in good], np.stack([r for _, r in good]))
            number += 1
        done.update(good)
        bar.update(float(sum(weights[index[n]] for n in names)))

    if todo_blocks and compute["engine"] == "ray":
        for names, rows, reasons in _ray_blocks(job, keys, sources, todo_blocks, compute):
            collect(names, rows, reasons)
    elif todo_blocks:
        if compute["engine"] != "local":
            raise ValueError(f"compute.engine {compute['engine']!r}; expected one of {ENGINES}")
        model = job.load() if model is None else model
        for block in todo_blocks:
            rows, reasons = process_block(job, model, [sources[i] for i in block])
            collect([keys[i] for i in block], rows, reasons)
    bar.close()
    return Extraction(rows={k: done[k] for k in keys if k in done},
                      skipped={k: skipped[k] for k in keys if k in skipped},
                      sources=dict(zip(keys, sources)))


# ----------------------------------------------------------------------------- Ray


def _to_bytes(row: np.ndarray | None) -> bytes:
    if row is None:
        return b""
    buf = io.BytesIO()
    np.save(buf, np.asarray(row), allow_pickle=False)
    return buf.getvalue()


def _from_bytes(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


class _BlockWorker:
    """A Ray Data actor: sizes its threads, loads the job's model once, then processes one block
    per call."""

    def __init__(self, job: Job, threads: int):
        set_threads(threads)
        self.job = job
        self.model = job.load()

    def __call__(self, batch: dict) -> dict:
        names, blobs, reasons = [], [], []
        for keys, sources in zip(batch["keys"], batch["sources"]):
            rows, why = process_block(self.job, self.model, list(sources))
            names.extend(str(k) for k in keys)
            blobs.extend(_to_bytes(r) for r in rows)
            reasons.extend("" if w is None else w for w in why)
        return {"key": np.array(names, dtype=object), "row": np.array(blobs, dtype=object),
                "reason": np.array(reasons, dtype=object)}


def ray_address(compute: dict) -> str | None:
    """RAY_ADDRESS wins, then compute.ray_address; None starts (or joins) a local instance."""
    return os.environ.get("RAY_ADDRESS") or compute.get("ray_address") or None


def _ray_blocks(job: Job, keys, sources, blocks, compute):
    """Yield (keys, rows, reasons) per finished Ray batch; order is the cluster's, not ours."""
    try:
        import ray  # only here: the local engine never imports Ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ParamsError("params.yaml: 'compute.engine' is 'ray' but Ray Data is not installed; "
                          "pip install 'fairser[ray]'") from None

    if not ray.is_initialized():
        ray.init(address=ray_address(compute), ignore_reinit_error=True, log_to_driver=False,
                 include_dashboard=False)
    threads = thread_count(compute.get("threads"))
    resources = ray.cluster_resources()
    gpu = job.device == "cuda" or (job.device == "auto" and resources.get("GPU", 0) > 0)
    if gpu:
        workers = compute.get("ray_workers") or max(1, int(resources.get("GPU", 1)))
    else:
        workers = compute.get("ray_workers") or max(1, int(resources.get("CPU", 1) // threads))
    items = [{"keys": [keys[i] for i in b], "sources": [sources[i] for i in b]} for b in blocks]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), 200))
    out = ds.map_batches(_BlockWorker, fn_constructor_args=(job, threads), batch_size=1,
                         concurrency=min(workers, len(items)), num_cpus=threads,
                         num_gpus=1 if gpu else 0, batch_format="numpy")
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        names = [str(k) for k in batch["key"]]
        reasons = [str(r) or None for r in batch["reason"]]
        rows = [None if why else _from_bytes(b) for b, why in zip(batch["row"], reasons)]
        yield names, rows, reasons
