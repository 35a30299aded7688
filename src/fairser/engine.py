"""Execution engines for the per-clip stages (features, speaker, pseudo): local or Ray.

One entry point, `run_clips`: "apply this model to these clips" -> {file: row} plus {file: reason}
for the clips that could not be decoded or processed. The stages turn the rows into their caches
(docs/DESIGN.md) and never import Ray; the `compute` section of params.yaml picks the engine:

- `local` (default): one process, the model loaded once, blocks of clips in order, each finished
  block checkpointed (resumable after a kill). Ray is never imported.
- `ray`: the same blocks as items of a Ray Data dataset, `map_batches` over an actor pool (each
  actor loads the model once; one GPU per actor on CUDA), results keyed by file name and merged on
  the driver, which checkpoints them as they stream in. The cluster comes from `RAY_ADDRESS` or
  `compute.ray_address`, else a local Ray instance is started (docs/SCALING.md).

Both engines run the same blocks through the same `process_block`, so they give the same rows.
A clip that fails to decode or to process is a skipped row with its reason in both, never a
failed (cluster) job; the stage then reports it in one line naming the clip.

Thread sizing (`thread_count`, `set_threads`): torch's intra- and inter-op pools are sized from
the CPUs this process may use (`os.sched_getaffinity`), `compute.threads`, or FAIRSER_THREADS
(which wins); numpy's BLAS gets one thread (its products here are tiny).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

ENGINES = ("local", "ray")
KINDS = ("features", "speaker", "pseudo")
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
    from fairser.errors import ParamsError

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


# ----------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class ClipTask:
    """What to apply to each clip, in a form that can be sent to a Ray actor (plain values).

    kind: features | speaker | pseudo; model: the name the stage's loader takes; device: the
    params value (auto | cpu | cuda), resolved where the model is loaded; options: extra loader
    arguments (pseudo: threshold_hz); revision: the hub commit to load; batch_seconds: the padded-audio budget of
    one forward pass inside a block.
    """

    kind: str
    model: str
    device: str = "auto"
    options: tuple = ()
    batch_seconds: float = 64.0
    revision: str | None = None  # the hub commit the stage resolved (fairser.provenance)
    threads: int | None = field(default=None, compare=False)

    def load(self):
        """The model object, through the stage module's own loader (loaded once per process)."""
        opts = dict(self.options)
        if self.kind == "features":
            from fairser.features import load_upstream, resolve_device

            return load_upstream(self.model, resolve_device(self.device, key="features.device"),
                                 self.revision)
        if self.kind == "speaker":
            from fairser.features import resolve_device
            from fairser.speaker import load_embedder

            return load_embedder(self.model, resolve_device(self.device, key="speaker.device"),
                                 self.revision)
        if self.kind == "pseudo":
            from fairser.features import resolve_device
            from fairser.idi import load_pseudo_model

            return load_pseudo_model(self.model, threshold_hz=opts["threshold_hz"],
                                     device=resolve_device(self.device, key="speaker.device"),
                                     revision=self.revision)
        raise ValueError(f"unknown clip task kind {self.kind!r}; expected one of {KINDS}")


def _batch_fn(kind: str):
    """kind -> function(model, waves, batch_seconds) -> (rows, reasons): the stage module's
    batched pass; reasons[i] is None for a good row, else why clip i has none."""
    if kind == "features":
        from fairser.features import pooled_batch
        return pooled_batch
    if kind == "speaker":
        from fairser.speaker import embed_batch
        return embed_batch
    if kind == "pseudo":
        from fairser.idi import predict_batch
        return predict_batch
    raise ValueError(f"unknown clip task kind {kind!r}; expected one of {KINDS}")


def decode_reason(err: BaseException, path: str) -> str:
    """A skip reason that is the same on every machine: the clip's folder is cut out."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text.replace(str(path), Path(path).name)
    return f"undecodable ({type(err).__name__}{': ' + text[:200] if text else ''})"


def process_block(kind: str, model, paths: list[str], batch_seconds: float):
    """Decode and process one block of clips: (rows, reasons), one entry per path.

    A clip that fails to decode gets a reason and no row; the others go through the model's
    batched pass together. rows[i] is a numpy array or None.
    """
    from fairser.features import read_wav

    waves, reasons = [], []
    for path in paths:
        try:
            waves.append(read_wav(path))
            reasons.append(None)
        except Exception as err:  # noqa: BLE001 (any decoder failure is this clip's, not the job's)
            waves.append(None)
            reasons.append(decode_reason(err, path))
    good = [i for i, w in enumerate(waves) if w is not None]
    rows: list = [None] * len(paths)
    if good:
        out, why = _batched_or_clip_by_clip(kind, model, [waves[i] for i in good], batch_seconds)
        for j, i in enumerate(good):
            if why[j] is None:
                rows[i] = np.asarray(out[j])
            else:
                reasons[i] = why[j]
    return rows, reasons


def _batched_or_clip_by_clip(kind: str, model, waves: list, batch_seconds: float):
    """The model's batched pass; if it raises, the block again one clip at a time, so the clip
    that breaks the model gets the reason (`<kind> (<model>) failed (<error>)`) and the others
    their rows."""
    fn = _batch_fn(kind)
    try:
        return fn(model, waves, batch_seconds)
    except Exception:  # noqa: BLE001 (which clip failed is found below)
        if len(waves) == 1:
            return [None], [_failure(kind, model)]
    rows, reasons = [], []
    for wave in waves:
        try:
            out, why = fn(model, [wave], batch_seconds)
            rows.append(out[0])
            reasons.append(why[0])
        except Exception:  # noqa: BLE001 (this clip's failure, reported with its name)
            rows.append(None)
            reasons.append(_failure(kind, model))
    return rows, reasons


def _failure(kind: str, model) -> str:
    """`<kind> (<model name>) failed (<Type>: <first line>)` for the exception being handled."""
    import sys

    err = sys.exc_info()[1]
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return (f"{kind} ({getattr(model, 'name', type(model).__name__)}) failed "
            f"({type(err).__name__}{': ' + first if first else ''})")


# ----------------------------------------------------------------------------- results


@dataclass
class Extraction:
    """Rows by file name, and the clips without a row with their reasons."""

    rows: dict[str, np.ndarray]
    skipped: dict[str, str]

    def stacked(self, files, wav_dir: str | Path) -> np.ndarray:
        """Rows in `files` order; a skipped clip is one InputError naming it and its reason."""
        from fairser.errors import InputError
        from fairser.features import wav_path

        bad = [f for f in files if f in self.skipped]
        if bad:
            more = f" ({len(bad)} clips failed; the others are done and checkpointed)" if len(bad) > 1 else ""
            raise InputError(f"{wav_path(wav_dir, bad[0])}: {self.skipped[bad[0]]}{more}")
        return np.stack([self.rows[f] for f in files])


def _load_done(partial_dir: Path | None) -> dict[str, np.ndarray]:
    from fairser.features import load_chunks

    if partial_dir is None:
        return {}
    partial_dir.mkdir(parents=True, exist_ok=True)
    return load_chunks(partial_dir)


def run_clips(task: ClipTask, files, wav_dir: str | Path, blocks: list[list[int]], *,
              compute: dict | None = None, model=None, partial_dir: str | Path | None = None,
              weights=None, progress: bool = True, desc: str | None = None,
              unit: str = "clip") -> Extraction:
    """Apply `task` to every clip of `files` (under `wav_dir`), block by block.

    blocks: lists of indices into `files` covering each clip once; a block is one checkpoint
    chunk and one Ray item, and its clips are batched together through the model.
    compute: params.yaml's `compute` section (engine, threads, ray_address, ray_workers).
    model: an already loaded model for the local engine (else task.load() is called once).
    partial_dir: checkpoint folder (fairser.features chunks); clips it holds are not redone.
    weights: per-clip progress amounts (e.g. samples), default 1 each.
    """
    compute = {**DEFAULT_COMPUTE, **(compute or {})}
    files = list(files)
    partial_dir = Path(partial_dir) if partial_dir is not None else None
    done = _load_done(partial_dir)
    todo_blocks = [[i for i in b if files[i] not in done] for b in blocks]
    todo_blocks = [b for b in todo_blocks if b]
    weights = np.ones(len(files)) if weights is None else np.asarray(weights)
    total = float(weights.sum())
    left = float(sum(weights[i] for b in todo_blocks for i in b))
    bar = tqdm(total=total, initial=total - left, unit=unit, unit_scale=unit != "clip",
               desc=desc or f"{task.kind} ({task.model})", disable=not progress)
    skipped: dict[str, str] = {}
    number = len(list(partial_dir.glob("chunk_*.npz"))) if partial_dir is not None else 0

    index = {f: i for i, f in enumerate(files)}

    def advance(names):
        bar.update(float(sum(weights[index[n]] for n in names)))

    def collect_and_advance(names, rows, reasons):
        nonlocal number
        good = [(n, r) for n, r, why in zip(names, rows, reasons) if why is None]
        skipped.update((n, why) for n, why in zip(names, reasons) if why is not None)
        if partial_dir is not None and good:
            from fairser.features import save_chunk

            save_chunk(partial_dir, number, [n for n, _ in good], np.stack([r for _, r in good]))
            number += 1
        done.update(good)
        advance(names)

    from fairser.features import wav_path

    if todo_blocks and compute["engine"] == "ray":
        for names, rows, reasons in _ray_blocks(task, files, wav_dir, todo_blocks, compute):
            collect_and_advance(names, rows, reasons)
    elif todo_blocks:
        if compute["engine"] != "local":
            raise ValueError(f"compute.engine {compute['engine']!r}; expected one of {ENGINES}")
        model = task.load() if model is None else model
        for block in todo_blocks:
            names = [files[i] for i in block]
            rows, reasons = process_block(task.kind, model,
                                          [str(wav_path(wav_dir, n)) for n in names],
                                          task.batch_seconds)
            collect_and_advance(names, rows, reasons)
    bar.close()
    return Extraction(rows={f: done[f] for f in files if f in done},
                      skipped={f: skipped[f] for f in files if f in skipped})


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
    """A Ray Data actor: loads the task's model once, then processes one block per call."""

    def __init__(self, task: ClipTask):
        set_threads(thread_count(task.threads))
        self.task = task
        self.model = task.load()

    def __call__(self, batch: dict) -> dict:
        names, blobs, reasons = [], [], []
        for files, paths in zip(batch["files"], batch["paths"]):
            rows, why = process_block(self.task.kind, self.model, list(paths), self.task.batch_seconds)
            names.extend(str(f) for f in files)
            blobs.extend(_to_bytes(r) for r in rows)
            reasons.extend("" if w is None else w for w in why)
        return {"file": np.array(names, dtype=object), "row": np.array(blobs, dtype=object),
                "reason": np.array(reasons, dtype=object)}


def ray_address(compute: dict) -> str | None:
    """RAY_ADDRESS wins, then compute.ray_address; None starts (or joins) a local instance."""
    return os.environ.get("RAY_ADDRESS") or compute.get("ray_address") or None


def _ray_blocks(task: ClipTask, files, wav_dir, blocks, compute):
    """Yield (names, rows, reasons) per finished Ray batch; order is the cluster's, not ours."""
    try:
        import ray  # only here: the local engine never imports Ray
        import ray.data  # noqa: F401
    except ImportError:
        from fairser.errors import ParamsError

        raise ParamsError("params.yaml: 'compute.engine' is 'ray' but Ray Data is not installed; "
                          "pip install 'fairser[ray]'") from None

    from fairser.features import wav_path

    if not ray.is_initialized():
        ray.init(address=ray_address(compute), ignore_reinit_error=True, log_to_driver=False,
                 include_dashboard=False)
    threads = thread_count(compute.get("threads"))
    resources = ray.cluster_resources()
    gpu = task.device == "cuda" or (task.device == "auto" and resources.get("GPU", 0) > 0)
    if gpu:
        workers = compute.get("ray_workers") or max(1, int(resources.get("GPU", 1)))
    else:
        workers = compute.get("ray_workers") or max(1, int(resources.get("CPU", 1) // threads))
    items = [{"files": [files[i] for i in b], "paths": [str(wav_path(wav_dir, files[i])) for i in b]}
             for b in blocks]
    task = ClipTask(task.kind, task.model, task.device, task.options, task.batch_seconds, threads)
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), 200))
    out = ds.map_batches(_BlockWorker, fn_constructor_args=(task,), batch_size=1,
                         concurrency=min(workers, len(items)), num_cpus=threads,
                         num_gpus=1 if gpu else 0, batch_format="numpy")
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        names = [str(f) for f in batch["file"]]
        reasons = [str(r) or None for r in batch["reason"]]
        rows = [None if why else _from_bytes(b) for b, why in zip(batch["row"], reasons)]
        yield names, rows, reasons
