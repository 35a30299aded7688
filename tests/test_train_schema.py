"""Training on a corpus that is not CREMA-D-shaped (issue 11): four classes calm, joy, anger,
grief (K = 4, positive threshold 1/4) and gender only. Hand-computed cases; tiny and fast."""

import numpy as np
import pandas as pd
import pytest
import torch

from fairser import config
from fairser import schema as corpus_schema
from fairser.errors import InputError
from fairser.debias.jtt import error_set
from fairser.train import class_weights, load_folds, random_scores, run_set, training_targets
from helpers import shipped_params

torch.set_num_threads(1)
CLASSES = ("calm", "joy", "anger", "grief")
SCHEMA = corpus_schema.Schema(classes=CLASSES, folds=2,
                              attributes=(corpus_schema.Attribute("gender", "sex", ("Male", "Female")),))

# 0.2 lies between 1/6 and 1/4: positive under CREMA-D's threshold, not under this corpus's.
P = np.array([[0.7, 0.1, 0.1, 0.1],
              [0.3, 0.3, 0.2, 0.2],
              [0.1, 0.1, 0.1, 0.7],
              [0.2, 0.2, 0.3, 0.3]])


def test_class_weights_count_p_above_one_quarter_and_sum_to_four():
    # n_c (p_c > 1/4) = 2, 1, 1, 2; N = 4, beta = 3/4; raw_c = (1 - beta) / (1 - beta^n_c)
    raw = np.array([0.25 / (1 - 0.75 ** 2), 1.0, 1.0, 0.25 / (1 - 0.75 ** 2)])
    w = class_weights(P, SCHEMA.threshold)
    np.testing.assert_allclose(w, raw * 4 / raw.sum(), rtol=1e-12)
    assert w.sum() == pytest.approx(4.0)
    np.testing.assert_array_equal(class_weights(P), w)  # no threshold given: 1/K of p's K columns
    # With 1/6 class 0 would count 3 positives (0.2 > 1/6): the threshold matters.
    assert not np.allclose(class_weights(P, 1.0 / 6), w)


def test_hard_targets_use_one_quarter():
    hard = training_targets(P, "hard", SCHEMA.threshold)
    np.testing.assert_array_equal(hard[1], [0.5, 0.5, 0.0, 0.0])
    np.testing.assert_array_equal(hard[3], [0.0, 0.0, 0.5, 0.5])
    np.testing.assert_array_equal(hard[0], [1.0, 0.0, 0.0, 0.0])


def test_jtt_error_set_threshold_is_one_over_k():
    probs = np.array([[0.26, 0.24, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25], [0.2, 0.3, 0.3, 0.2]])
    labels = np.array([0, 0, 0])
    assert error_set(probs, labels, 0.25).tolist() == [False, True, True]
    assert error_set(probs, labels).tolist() == [False, True, True]  # default 1/K of 4 columns
    assert error_set(probs, labels, 1.0 / 6).tolist() == [False, False, False]


def test_random_scores_have_k_columns():
    a = random_scores(500, 3, len(CLASSES))
    assert a.shape == (500, 4)
    np.testing.assert_allclose(a.sum(1), 1.0)


def write_corpus(root, n=48, seed=0):
    """n clips of four classes (majority class i % 4), 2 folds, features that separate classes."""
    rng = np.random.default_rng(seed)
    cls = np.arange(n) % 4
    p = np.full((n, 4), 0.1)
    p[np.arange(n), cls] = 0.7
    feats = rng.standard_normal((n, 2, 5)).astype(np.float32)
    feats[:, :, 0] += cls[:, None]
    files = [f"clip{i:03d}.wav" for i in range(n)]
    for d in ("corpus", "features", "split", "groups"):
        (root / d).mkdir()
    clips = pd.DataFrame(p, columns=list(CLASSES))
    clips.insert(0, "file", files)
    clips.insert(1, "actor", np.arange(n) % 6 + 1)
    clips.to_csv(root / "corpus" / "clips.csv", index=False)
    pd.DataFrame({"actor": np.arange(6) + 1, "sex": ["Male", "Female"] * 3}).to_csv(
        root / "corpus" / "actors.csv", index=False)  # JTT's and GEORGE's logs read the groups
    corpus_schema.save(SCHEMA, root / "corpus")
    np.save(root / "features" / "features.npy", feats.astype(np.float16))
    pd.DataFrame({"file": files}).to_csv(root / "features" / "index.csv", index=False)
    rows = []
    for fold in (1, 2):
        for i in range(n):
            split = "test" if i % 2 == fold - 1 else ("dev" if i % 8 in (2, 3) else "train")
            rows.append((fold, files[i], split, CLASSES[cls[i]] if split != "test" else ""))
    folds = pd.DataFrame(rows, columns=["fold", "file", "split", "label"])
    folds.to_csv(root / "split" / "folds.csv", index=False)
    g = folds[folds["split"] != "test"].copy()
    g["group"] = [int(f[4:7]) % 3 for f in g["file"]]  # three groups, e.g. 0, 1 and a missing value's id
    g.to_csv(root / "groups" / "gender.csv", index=False)
    return folds, cls


def tiny_params():
    params = config.resolve(shipped_params())
    params["train"].update(epochs=2, batch_size=8, hidden=4, device="cpu", seeds=1, extensions=[])
    params["methods"]["jtt"]["identification_epochs"] = 1
    return params


def test_training_writes_the_schemas_k_columns(tmp_path):
    folds, _ = write_corpus(tmp_path)
    kw = dict(corpus=tmp_path / "corpus", features=tmp_path / "features", split=tmp_path / "split",
              groups_dir=tmp_path / "groups", params=tiny_params())
    results = run_set("baselines", out=tmp_path / "runs" / "baselines", **kw)
    results += run_set("gender", out=tmp_path / "runs" / "gender", **kw)
    n_test = (folds["split"] == "test").sum()
    for folder in ("baselines", "gender"):
        for method_dir in sorted((tmp_path / "runs" / folder).iterdir()):
            pred = pd.read_csv(method_dir / "predictions.csv")
            assert list(pred.columns) == ["fold", "seed", "file", *CLASSES], method_dir.name
            assert len(pred) == n_test
            np.testing.assert_allclose(pred[list(CLASSES)].sum(axis=1), 1.0, atol=1e-6)
    assert {r.test_probs.shape[1] for r in results} == {4}  # the head has K = 4 outputs


def test_load_folds_reads_schema_labels_and_carries_the_threshold(tmp_path):
    _, cls = write_corpus(tmp_path)
    _, p, folds, _ = load_folds(tmp_path / "corpus", tmp_path / "features", tmp_path / "split",
                                classes=CLASSES, threshold=SCHEMA.threshold)
    assert p.shape == (48, 4)
    for f in folds.values():
        np.testing.assert_array_equal(f.labels, cls[f.train])  # label name -> index in CLASSES
        assert f.threshold == 0.25


def test_a_label_outside_the_schemas_classes_is_rejected(tmp_path):
    write_corpus(tmp_path)
    folds = pd.read_csv(tmp_path / "split" / "folds.csv", keep_default_na=False)
    folds.loc[folds.index[folds["split"] == "train"][0], "label"] = "angry"  # a CREMA-D class
    folds.to_csv(tmp_path / "split" / "folds.csv", index=False)
    with pytest.raises(InputError, match=r"folds.csv: fold 1 has training clips without a single class "
                                         r"label in \['calm', 'joy', 'anger', 'grief'\]"):
        run_set("baselines", corpus=tmp_path / "corpus", features=tmp_path / "features",
                split=tmp_path / "split", groups_dir=tmp_path / "groups", out=tmp_path / "runs",
                params=tiny_params())
