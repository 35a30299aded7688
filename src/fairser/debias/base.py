"""What the batched trainer (fairser.train) and the debias methods share, below both of them.

A method is one module under fairser/debias/ that subclasses `Method` and calls `register`: it
declares its params (methods.<name> in params.yaml), the groups it needs, how it builds its Run
on a fold, and its per-batch objective. The trainer only looks methods up in REGISTRY, so adding
a method edits neither fairser.train nor this module. A two-phase method (JTT, GEORGE) also
names the run its second phase reads (`phase1`): the trainer trains every first phase batched,
then every second phase batched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np
import torch

from fairser.errors import InputError
from fairser.errors import ParamsError

# Snapshot epoch 0: the kept epoch (lowest dev loss), recorded after training.
BEST = 0


@dataclass
class Run:
    """One training run: a method on one fold with one training seed. Row arrays index the
    feature cache.

    Per-clip arrays (sample_weight, memberships, labels) are aligned with `train`.
    Runs with the same `seed` and `train` rows share initialisation and shuffle order.
    """

    name: str                      # e.g. "gender/gdro": names the run in messages
    method: str
    fold: int
    train: np.ndarray
    dev: np.ndarray
    test: np.ndarray
    seed: int                      # derived seed (run_seed) of initialisation and shuffle order
    labels: np.ndarray | None = None        # single majority class id per train clip
    sample_weight: np.ndarray | None = None  # per-clip loss weights (RW, JTT)
    memberships: np.ndarray | None = None    # (n_train, G): group DRO one-hot or soft
    hparams: dict = field(default_factory=dict)  # methods.<method> settings
    seed_index: int = 0            # s = 0..train.seeds-1: the `seed` column of the outputs
    # Epochs after which to record the training clips' probabilities and hidden features
    # (Result.snapshots); BEST = the kept epoch. What a two-phase method's second phase reads.
    snapshots: tuple[int, ...] = ()
    # What `build` derived from phase 1 (e.g. JTT's error set), for the method's `logs`.
    built: dict = field(default_factory=dict)
    # Last-layer methods (DFR, AFR): start from these parameters (a trained run's Result.params)
    # instead of the seed's initialisation, and standardise the inputs with these feature rows
    # (that run's training set, so its encoder sees the inputs it was trained on); None = own.
    init: list | None = None
    standardise: np.ndarray | None = None
    keep_params: bool = False      # Result.params: the kept epoch's parameters (a phase 1's)
    # Runs with different `apart` never share a job: a phase 1 that only a new method needs
    # (DFR's ERM) leaves the jobs of the set's other runs, and so their numbers, as they were.
    apart: str = ""


@dataclass
class Result:
    """What a run leaves: test probabilities at the kept epoch and its learning curve."""

    run: Run
    test_probs: np.ndarray   # (n_test, K) softmax probabilities, rows as run.test
    train_loss: np.ndarray   # (epochs,) mean of the minimised loss over the epoch's steps
    dev_loss: np.ndarray     # (epochs,) plain class-balanced loss on the dev set
    best_epoch: int          # 1-based epoch kept (lowest dev loss, first on ties)
    # {epoch: {"probs": (n_train, K), "hidden": (n_train, H)}} for each epoch of run.snapshots
    # (BEST = the kept epoch): the training clips scored by the model at that epoch, "hidden"
    # being encoder 0's output Linear(D, H) (the penultimate layer).
    snapshots: dict = field(default_factory=dict)
    dev_probs: np.ndarray | None = None  # (n_dev, K) at the kept epoch, rows as run.dev
    # A method with a sweep (Method.configs): every result of this run's (fold, seed), this one
    # included, and their scores (Method.select).
    sweep: list = field(default_factory=list)
    sweep_scores: list = field(default_factory=list)
    # [layer_logits (E, L), w1 (E, D, H), b1 (E, H), w2 (heads, in, K), b2 (heads, K)] at the kept
    # epoch (then any Method.extra_params), when run.keep_params.
    params: list | None = None


@dataclass
class FoldData:
    """What every method may use for one fold: feature rows and per-training-clip arrays."""

    fold: int
    train: np.ndarray
    dev: np.ndarray
    test: np.ndarray
    labels: np.ndarray                  # single majority class id per training clip
    groups: np.ndarray | None = None    # hard group id per training clip, 0..G-1
    soft: np.ndarray | None = None      # (n_train, G) soft memberships (PGDRO)
    dev_groups: np.ndarray | None = None  # group id per dev clip (ids as `groups`; DFR)
    dev_labels: np.ndarray | None = None  # single majority class id per dev clip (DFR)
    # The positive threshold 1/K of the corpus's K classes (schema.Schema.threshold); None =
    # 1/K of the probabilities a method reads (JTT's error set).
    threshold: float | None = None
    votes: np.ndarray | None = None     # (n_train, K) vote distributions of the training clips


def cb_losses(logits: torch.Tensor, targets: torch.Tensor, class_w: torch.Tensor) -> torch.Tensor:
    """Per-clip class-balanced soft-target cross-entropy (PROTOCOL section 3, EMO-SUPERB):
    loss_i = -w_i sum_k t_ik log softmax(z_i)_k with w_i = sum_k w_k t_ik.

    logits, targets (..., B, K); class_w (..., K) broadcast over the batch.
    """
    w_i = (targets * class_w.unsqueeze(-2)).sum(-1)
    return -w_i * (targets * torch.log_softmax(logits, -1)).sum(-1)


def seed_entropy(seed: int, fold: int, seed_index: int, *tags: int) -> list[int]:
    """Entropy of a (fold, seed index) random stream; seed index 0 keeps the stream it had
    before train.seeds existed (one seed per fold)."""
    return [seed, fold, *tags] + ([seed_index] if seed_index else [])


def run_seed(seed: int, fold: int, seed_index: int = 0) -> int:
    """One seed per (fold, seed index), shared by every method: same initialisation and shuffle
    order, so methods differ only in their objective (and DS in its subset) and each (fold, seed)
    is a paired comparison between methods."""
    return int(np.random.SeedSequence(seed_entropy(seed, fold, seed_index)).generate_state(1)[0])


def generator(seed: int, *tags: int) -> torch.Generator:
    """A torch generator for the stream (seed, *tags)."""
    state = np.random.SeedSequence([seed, *tags]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def linear_init(gen: torch.Generator, fan_in: int, fan_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.nn.Linear's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), weight stored (in, out)."""
    bound = 1.0 / np.sqrt(fan_in)
    w = (torch.rand(fan_in, fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    b = (torch.rand(fan_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    return w.float(), b.float()


@dataclass(frozen=True)
class Arch:
    """Encoders per run (layer weights + Linear(D, H)), heads per run and the head input width."""

    encoders: int
    heads: int
    head_in_factor: int  # head input = factor * hidden (DisEnt concatenates two encoders)


class Batch:
    """One training step of one job, as a method's objective sees it. Tensors are per run
    (R = every run of the job, in job order): z (R, E, B, H) encoder outputs, targets (R, B, K),
    valid (R, B) real (not padded) slots, pos (R, B) positions in the run's training set."""

    def __init__(self, engine, params, z, targets, valid, pos, epoch):
        self.engine, self.params, self.z = engine, params, z
        self.targets, self.valid, self.pos, self.epoch = targets, valid, pos, epoch
        self.vf = valid.float()
        self._losses = None

    def head(self, inputs: torch.Tensor, k: int) -> torch.Tensor:
        """(R, B, in) -> (R, B, K) logits of head k."""
        return self.engine.head(self.params, inputs, k)

    def cb(self, logits: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """(R, B) class-balanced losses of `logits` against the batch's (or given) targets."""
        return cb_losses(logits, self.targets if targets is None else targets, self.engine.cw)

    def losses(self) -> torch.Tensor:
        """(R, B) class-balanced losses of head 0 on encoder 0 (the single-head model), computed
        once per step and shared by every method of the job."""
        if self._losses is None:
            self._losses = self.cb(self.head(self.z[:, 0], 0))
        return self._losses

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """(R, B) -> (R,) mean over each run's valid slots."""
        return (x * self.vf).sum(1) / self.vf.sum(1).clamp_min(1)

    def per_clip(self, name: str) -> torch.Tensor:
        """A per-training-clip array of the engine (sample_weight (R, n), memberships (R, n, G)),
        at this batch's positions."""
        x = getattr(self.engine, name)
        idx = self.pos if x.dim() == 2 else self.pos.unsqueeze(-1).expand(-1, -1, x.shape[2])
        return x.gather(1, idx)

    def labels(self) -> torch.Tensor:
        """(R, B) single majority class of each slot (padding clamped to the last class)."""
        return self.engine.per_run(self.engine.labels).gather(1, self.pos).clamp_max(self.engine.K - 1)

    def hp(self, key: str) -> torch.Tensor:
        """(R, 1) setting `key` of each run (0 for runs of a method without it)."""
        return self.engine.hp(key)


class Method:
    """A debias method. Subclasses set the class attributes and override what they change.

    name: its key in params.yaml `methods:`, SETS and the runs folders.
    family: runs of one family train in one job and share its architecture (ARCHS) and its
        reported model (`predict`); every method of a family must agree on both.
    params: the methods.<name> keys it reads, each a finite number (checked before training).
    groups: None, "hard" (FoldData.groups) or "soft" (FoldData.soft).
    taxonomy: its family of debias methods, one of TAXONOMY (the report's trade-off figure).
    """

    name: str = ""
    taxonomy: str = ""
    family: str = "head"
    arch: Arch = Arch(1, 1, 1)
    params: tuple[str, ...] = ()
    groups: str | None = None

    # -- runs ----------------------------------------------------------------------------

    def phase1(self, fold: FoldData, seed: int, hparams: dict, seed_index: int) -> Run | None:
        """The run whose Result `build` reads (two-phase methods), with the snapshots it needs;
        None for a one-phase method."""
        return None

    def build(self, name: str, fold: FoldData, seed: int, hparams: dict, seed_index: int,
              first: Result | None = None) -> Run:
        """This method's Run on one fold (`first`: the trained phase1 run, if any)."""
        return Run(**base_run(name, self.name, fold, seed, seed_index), hparams=dict(hparams))

    def configs(self, hparams: dict) -> list[dict]:
        """The settings of phase 2 to train on each (fold, seed), a sweep from which `select`
        keeps one; default the one setting `hparams`."""
        return [hparams]

    def select(self, results: list["Result"], p: np.ndarray, threshold: float) -> tuple[int, list]:
        """(index of the kept result, one score per result) among one (fold, seed)'s sweep
        (`configs`); p (N, K) vote distributions of every feature row. Default: the first."""
        return 0, [None] * len(results)

    def logs(self, results: list["Result"], attributes: dict) -> dict:
        """{file name: DataFrame} the train stage writes beside this method's predictions.csv;
        results: its kept runs; attributes {name: (N,) true group name or None per feature row},
        for logging only. Default: none."""
        return {}

    # -- training ------------------------------------------------------------------------

    @property
    def needs_labels(self) -> bool:
        """Whether its runs need Run.labels (the single class per training clip)."""
        return self.family != "head"

    def learning_rate(self, lr: float, hparams: dict) -> float:
        """Adam's step size for this method's runs (train.lr unless it says otherwise; a method
        with its own must be its own family, so a job has one)."""
        return lr

    def extra_params(self, engine) -> list[torch.Tensor]:
        """Parameters beyond the SER model's, stacked per run (R, ...) and trained with it (e.g.
        an adversary's head); drawn from streams other than the model's, so the model itself
        starts as ERM's. Every method of a family must agree."""
        return []

    def init_state(self, engine, mask: torch.Tensor):
        """Per-job state the objective keeps across steps (mask (R,): this method's runs)."""
        return None

    def objective(self, batch: Batch, state, mask: torch.Tensor) -> torch.Tensor:
        """(R,) loss each run minimises on the batch; rows outside `mask` are ignored."""
        raise NotImplementedError

    def predict(self, engine, params, z: torch.Tensor) -> torch.Tensor:
        """(R, B, K) logits of the model the method reports, from encoder outputs z."""
        return engine.head(params, z[:, 0], 0)


REGISTRY: dict[str, Method] = {}

# Families of debias methods a Method.taxonomy names.
TAXONOMY = ("baseline", "pre-processing", "regularisation", "adversarial", "augmentation",
            "biased learner", "DRO", "last-layer")


def register(method: Method) -> Method:
    """Make `method` trainable by name (fairser.train.build_run, fit). Returns it."""
    if not method.name:
        raise ValueError("a method needs a name")
    if method.taxonomy not in TAXONOMY:
        raise ValueError(f"method {method.name}: taxonomy {method.taxonomy!r}; expected one of {TAXONOMY}")
    REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    if name not in REGISTRY:
        raise InputError(f"unknown method {name!r}; expected one of {sorted(REGISTRY)}")
    return REGISTRY[name]


def base_run(name: str, method: str, f: FoldData, seed: int, seed_index: int = 0) -> dict:
    """The Run fields every method shares: the fold's rows and labels, the (fold, seed) seed."""
    return dict(name=name, method=method, fold=f.fold, train=f.train, dev=f.dev, test=f.test,
                seed=run_seed(seed, f.fold, seed_index), labels=f.labels, seed_index=seed_index)


def needs_groups(f: FoldData, method: str) -> np.ndarray:
    if f.groups is None:
        raise InputError(f"method {method} needs a groups file (fold {f.fold})")
    return f.groups


def check_params(method: Method, hparams: dict) -> None:
    """Every key of method.params present and a finite number, named in one line if not."""
    for key in method.params:
        value = hparams.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
            raise ParamsError(f"params.yaml: 'methods.{method.name}.{key}' is {value!r}; "
                              f"expected a number")
