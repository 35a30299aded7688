"""One file per method: the registry the batched trainer reads (fairser.debias.base)."""

import numpy as np
import torch

from fairser.debias import REGISTRY
from fairser.train import FoldData, TrainConfig, build_run, fit

torch.set_num_threads(1)


def test_the_registry_holds_exactly_the_methods_of_the_run_sets_each_with_a_taxonomy():
    from fairser import config
    from fairser.debias.base import TAXONOMY
    from fairser.method_sets import SETS

    toys = {"twin"}  # tests/toy_method.py, registered by another test of this module
    assert set(REGISTRY) - toys == set(config.METHODS) - {"random"}
    assert set(config.METHODS) == {m for s in SETS.values() for m in s}
    assert set(config.GROUP_METHODS) <= set(SETS["gender"])
    assert all(m.taxonomy in TAXONOMY for m in REGISTRY.values())
    assert REGISTRY["erm"].taxonomy == "baseline" and REGISTRY["gdro"].taxonomy == "DRO"


def test_no_debias_module_imports_the_trainer():
    """fairser.debias sits below fairser.train: not even an import under TYPE_CHECKING."""
    import ast
    from pathlib import Path

    import fairser.debias

    for path in Path(fairser.debias.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "fairser.train" or n.startswith("fairser.train.") for n in names), path


def test_every_method_of_the_run_sets_is_registered_with_its_params():
    assert REGISTRY["gadro"].params == ("eta", "adjustment")
    assert REGISTRY["rw"].groups == "hard" and REGISTRY["pgdro"].groups == "soft"
    assert REGISTRY["erm"].groups is None


def test_a_method_in_one_new_file_trains_like_erm_when_its_objective_is_erms():
    import toy_method  # noqa: F401  (registers "twin")

    rng = np.random.default_rng(0)
    classes = rng.integers(0, 6, 40)
    feats = rng.standard_normal((40, 2, 4)).astype(np.float32)
    feats[:, :, 0] += classes[:, None]
    p = np.full((40, 6), 0.01)
    p[np.arange(40), classes] += 0.94
    f = FoldData(fold=1, train=np.arange(24), dev=np.arange(24, 30), test=np.arange(30, 40),
                 labels=classes[:24])
    runs = [build_run(m, m, f, seed=0) for m in ("twin", "erm")]
    twin, erm = fit(feats, p, runs, TrainConfig(epochs=3, batch_size=8, lr=1e-2, hidden=4))
    assert twin.run.method == "twin" and twin.train_loss[-1] < twin.train_loss[0]
    # same initialisation, shuffle order and objective: the same numbers, bit for bit
    np.testing.assert_array_equal(twin.test_probs, erm.test_probs)
