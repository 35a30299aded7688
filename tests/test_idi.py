"""IDI: pitch pseudo-gender, hub gender classifiers, k-means groups and their quality metrics."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from fairser import idi
from fairser.errors import InputError
from fairser import schema as corpus_schema
from fairser.constants import SAMPLE_RATE
from helpers import tone

torch.set_num_threads(1)


pytestmark = pytest.mark.usefixtures("hub_offline")


# ----------------------------------------------------------------------------- pitch


@pytest.mark.parametrize("f0", [110.0, 220.0])
def test_median_f0_of_a_harmonic_tone_is_its_fundamental(f0):
    assert idi.median_f0(tone(0.5, f0)) == pytest.approx(f0, rel=0.01)


def test_median_f0_of_silence_is_unknown():
    assert np.isnan(idi.median_f0(np.zeros(8000, dtype=np.float32)))


def test_pitch_probabilities_are_half_at_threshold_monotone_and_sum_to_one():
    p = idi.pitch_probabilities([100.0, 165.0, 250.0, np.nan], 165.0)
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_allclose(p[1], [0.5, 0.5])
    np.testing.assert_allclose(p[3], [0.5, 0.5])  # unknown F0: no evidence either way
    assert p[0, 0] > 0.9 and p[2, 1] > 0.9
    # 1.25 x threshold gives p_female = 0.9 with slope 10: 1 / (1 + 1.25 ** -10)
    assert idi.pitch_probabilities([206.25], 165.0)[0, 1] == pytest.approx(1 / (1 + 1.25 ** -10))


def test_pitch_classifier_calls_low_voice_male_and_high_voice_female():
    clf = idi.load_pseudo_model("pitch", threshold_hz=165.0)
    low, high = clf.predict(tone(0.4, 110)), clf.predict(tone(0.4, 220))
    assert low["p_male"] > 0.9 and high["p_female"] > 0.9
    assert low["f0_hz"] == pytest.approx(110, rel=0.01)


# ----------------------------------------------------------------------------- hub classifier


def tiny_gender_model(folder, id2label):
    from transformers import (Wav2Vec2Config, Wav2Vec2FeatureExtractor,
                              Wav2Vec2ForSequenceClassification)

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=8,
                         num_conv_pos_embedding_groups=2, classifier_proj_size=8,
                         num_labels=len(id2label), id2label=id2label,
                         label2id={v: k for k, v in id2label.items()})
    Wav2Vec2ForSequenceClassification(cfg).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=SAMPLE_RATE).save_pretrained(folder)
    return str(folder)


def test_hub_gender_classifier_maps_probabilities_through_id2label(tmp_path):
    name = tiny_gender_model(tmp_path / "g", {0: "female", 1: "male"})
    clf = idi.load_pseudo_model(name, threshold_hz=165.0)
    wave = tone(0.3, 150)
    out = clf.predict(wave)
    inputs = clf.extractor(wave, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    with torch.inference_mode():
        p = torch.softmax(clf.model(inputs["input_values"]).logits[0].double(), -1).numpy()
    assert out["p_male"] == pytest.approx(p[1]) and out["p_female"] == pytest.approx(p[0])


def test_hub_gender_classifier_with_extra_classes_renormalises_over_male_and_female(tmp_path):
    name = tiny_gender_model(tmp_path / "g", {0: "Female", 1: "child", 2: " MALE "})
    out = idi.load_pseudo_model(name, threshold_hz=165.0).predict(tone(0.3, 150))
    assert out["p_male"] + out["p_female"] == pytest.approx(1.0)


def test_hub_model_without_gender_labels_is_refused_naming_it(tmp_path):
    name = tiny_gender_model(tmp_path / "g", {0: "angry", 1: "happy"})
    with pytest.raises(InputError, match=r"idi.pseudo_model '.*g'.*'angry', 'happy'.*male"):
        idi.load_pseudo_model(name, threshold_hz=165.0)


def test_unloadable_pseudo_model_is_one_line_naming_it():
    with pytest.raises(InputError, match=r"'nobody-here/no-gender'.*-S idi.pseudo_model="):
        idi.load_pseudo_model("nobody-here/no-gender", threshold_hz=165.0)


def test_pseudo_stage_writes_probabilities_and_f0(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "wav").mkdir(parents=True)
    files = ["1001_DFA_ANG_XX.wav", "1002_DFA_ANG_XX.wav"]
    for f, f0 in zip(files, (110, 230)):
        sf.write(corpus / "wav" / f, tone(0.3, f0), SAMPLE_RATE, subtype="PCM_16")
    pd.DataFrame({"file": files}).to_csv(corpus / "clips.csv", index=False)
    idi.run_pseudo(corpus, tmp_path / "pseudo", model="pitch", threshold_hz=165.0, progress=False)
    df = pd.read_csv(tmp_path / "pseudo" / "pseudo.csv")
    assert list(df.columns) == ["file", "p_male", "p_female", "f0_hz"]
    np.testing.assert_allclose(df["p_male"] + df["p_female"], 1.0, rtol=1e-5)
    assert df["p_male"].tolist()[0] > 0.9 and df["p_female"].tolist()[1] > 0.9


# ----------------------------------------------------------------------------- cluster quality


def test_purity_on_a_hand_made_assignment():
    # cluster 0: a a b -> 2; cluster 1: b b -> 2; cluster 2: a -> 1; (2 + 2 + 1) / 6
    assert idi.purity(clusters=[0, 0, 0, 1, 1, 2], labels=list("aabbba")) == pytest.approx(5 / 6)
    assert idi.purity(clusters=[0, 0, 0, 0], labels=list("aaab")) == pytest.approx(3 / 4)


def test_nmi_is_one_for_a_relabelled_partition_and_zero_for_an_independent_one():
    assert idi.nmi(clusters=[5, 5, 7, 7], labels=list("aabb")) == pytest.approx(1.0)
    assert idi.nmi(clusters=[0, 1, 0, 1], labels=list("aabb")) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- groups stage


def idi_inputs(root, *, n_actors=8, per_actor=6):
    """Two folds over well-separated voices: male actors' embeddings near -5, female near +5."""
    rng = np.random.default_rng(0)
    sexes = ["Male", "Female"] * (n_actors // 2)
    races = ["Caucasian", "African American", "Asian", "Unknown"] * (n_actors // 4)
    actors = pd.DataFrame({"actor": range(1001, 1001 + n_actors), "sex": sexes,
                           "age": [25, 40, 55, 30, 45, 60, 22, 38][:n_actors], "race": races})
    files, actor_of = [], []
    for a in actors["actor"]:
        for j in range(per_actor):
            files.append(f"{a}_S{j:02d}_ANG_XX.wav")
            actor_of.append(a)
    (root / "corpus").mkdir(parents=True)
    pd.DataFrame({"file": files, "actor": actor_of}).to_csv(root / "corpus" / "clips.csv", index=False)
    actors.to_csv(root / "corpus" / "actors.csv", index=False)
    sex = dict(zip(actors["actor"], actors["sex"]))
    emb = np.stack([rng.normal(-5 if sex[a] == "Male" else 5, 0.3, size=4) for a in actor_of])
    (root / "speaker").mkdir()
    pd.DataFrame({"file": files[::-1]}).to_csv(root / "speaker" / "index.csv", index=False)
    np.save(root / "speaker" / "embeddings.npy", emb[::-1].astype(np.float32))  # order via index.csv
    p_female = np.array([0.9 if sex[a] == "Female" else 0.2 for a in actor_of])
    p_female[0] = 0.8  # one male clip mislabelled
    (root / "pseudo").mkdir()
    pd.DataFrame({"file": files, "p_male": 1 - p_female, "p_female": p_female}).to_csv(
        root / "pseudo" / "pseudo.csv", index=False)
    rows = []
    for fold in (1, 2):
        for i, f in enumerate(files):
            rows.append({"fold": fold, "file": f, "split": ("train", "train", "dev", "test")[(i + fold) % 4],
                         "label": "angry"})
    (root / "split").mkdir()
    pd.DataFrame(rows).to_csv(root / "split" / "folds.csv", index=False)
    return files, sex, actor_of


def run(root, ks, schema=None, truth="gender"):
    idi.run_groups(root / "corpus", root / "split", root / "speaker", root / "pseudo", root / "groups",
                   root / "metrics" / "idi.json", ks=ks, schema=schema or corpus_schema.crema_d(),
                   truth=truth, progress=False)
    return json.loads((root / "metrics" / "idi.json").read_text())


def test_groups_files_cover_train_and_dev_rows_with_contract_columns(tmp_path):
    files, sex, actor_of = idi_inputs(tmp_path)
    run(tmp_path, [2, 4])
    folds = pd.read_csv(tmp_path / "split" / "folds.csv")
    expected = folds[folds["split"] != "test"][["fold", "file", "split"]].reset_index(drop=True)
    for name in ("gender", "pseudo", "kmeans_k2", "kmeans_k4"):
        df = pd.read_csv(tmp_path / "groups" / f"{name}.csv")
        pd.testing.assert_frame_equal(df[["fold", "file", "split"]], expected)
    gender = pd.read_csv(tmp_path / "groups" / "gender.csv")
    truth = [1 if sex[int(f[:4])] == "Female" else 0 for f in gender["file"]]
    assert gender["group"].tolist() == truth
    pseudo = pd.read_csv(tmp_path / "groups" / "pseudo.csv")
    assert list(pseudo.columns) == ["fold", "file", "split", "group", "p_0", "p_1"]
    assert set(pd.read_csv(tmp_path / "groups" / "kmeans_k4.csv")["group"]) <= {0, 1, 2, 3}


def test_two_clusters_of_separated_voices_recover_gender_on_train_and_dev(tmp_path):
    idi_inputs(tmp_path)
    report = run(tmp_path, [2])
    assert report["kmeans"]["k2"]["gender"]["purity"] == 1.0
    quality = pd.read_csv(tmp_path / "groups" / "quality.csv")
    assert quality.query("attribute == 'gender'")["nmi"].to_numpy() == pytest.approx(1.0)
    assert quality.query("attribute == 'gender'")["adjusted_rand"].to_numpy() == pytest.approx(1.0)
    g = pd.read_csv(tmp_path / "groups" / "gender.csv")
    k = pd.read_csv(tmp_path / "groups" / "kmeans_k2.csv")
    for fold in (1, 2):
        m = (g["fold"] == fold).to_numpy()
        assert idi.purity(clusters=k["group"][m], labels=g["group"][m]) == 1.0  # dev too, via predict


def test_pseudo_accuracy_counts_mislabelled_clips(tmp_path):
    files, _, _ = idi_inputs(tmp_path)
    report = run(tmp_path, [2])
    folds = pd.read_csv(tmp_path / "split" / "folds.csv")
    acc = pd.read_csv(tmp_path / "groups" / "pseudo_accuracy.csv", dtype={"fold": str}).set_index("fold")
    want = []
    for fold in (1, 2):
        rows = folds[(folds["fold"] == fold) & (folds["split"] != "test")]
        wrong = int(files[0] in set(rows["file"]))
        want.append(1 - wrong / len(rows))
        assert acc.loc[str(fold), "accuracy"] == pytest.approx(want[-1], abs=1e-6)
    assert acc.loc["all", "accuracy"] == pytest.approx(1 - 1 / len(files), abs=1e-6)
    assert report["pseudo_accuracy"]["mean"] == pytest.approx(np.mean(want), abs=1e-6)


def test_metrics_are_headline_means_without_lists_or_folds(tmp_path):
    idi_inputs(tmp_path)
    report = run(tmp_path, [2, 4])

    def leaves(node, prefix=""):
        assert not isinstance(node, list)
        if isinstance(node, dict):
            for k, v in node.items():
                yield from leaves(v, f"{prefix}{k}.")
        else:
            yield prefix[:-1]

    keys = list(leaves(report))
    assert not [k for k in keys if "fold" in k]
    # pseudo accuracy, three majority shares, purity per K and attribute
    assert sorted(keys) == sorted(["pseudo_accuracy.mean", "majority_share.gender", "majority_share.race",
                                   "majority_share.age"] + [f"kmeans.k{k}.{a}.purity" for k in (2, 4)
                                                            for a in ("gender", "race", "age")])


def test_purity_sits_beside_its_majority_share_baseline(tmp_path):
    # Issue 9: purity means little without the share of the largest group, which a single
    # cluster already scores; quality.csv holds both per fold, and the metric is their mean.
    idi_inputs(tmp_path)
    report = run(tmp_path, [2, 4])
    quality = pd.read_csv(tmp_path / "groups" / "quality.csv")
    assert set(quality.columns) == {"k", "fold", "attribute", "purity", "majority_share", "nmi",
                                    "adjusted_rand"}
    assert len(quality) == 2 * 2 * 3  # K x fold x attribute
    assert (quality["purity"] >= quality["majority_share"] - 1e-12).all()
    for attribute in ("gender", "race", "age"):
        part = quality[(quality["attribute"] == attribute) & (quality["k"] == 2)]
        assert report["majority_share"][attribute] == pytest.approx(part["majority_share"].mean(), abs=1e-6)
        assert report["kmeans"]["k2"][attribute]["purity"] == pytest.approx(part["purity"].mean(), abs=1e-6)


def test_majority_share_and_adjusted_rand_by_hand():
    assert idi.majority_share(list("aaab")) == pytest.approx(3 / 4)
    assert idi.majority_share(list("abab")) == pytest.approx(1 / 2)
    # Purity of one cluster is the majority share.
    assert idi.purity(clusters=[0, 0, 0, 0], labels=list("aaab")) == idi.majority_share(list("aaab"))
    assert idi.adjusted_rand(clusters=[3, 3, 5, 5], labels=list("aabb")) == pytest.approx(1.0)
    # Clusters crossing the labels evenly: at most chance agreement, ARI <= 0.
    assert idi.adjusted_rand(clusters=[0, 1, 0, 1], labels=list("aabb")) <= 0.0


def test_groups_are_deterministic(tmp_path):
    idi_inputs(tmp_path)
    run(tmp_path, [4])
    first = pd.read_csv(tmp_path / "groups" / "kmeans_k4.csv")
    run(tmp_path, [4])
    pd.testing.assert_frame_equal(first, pd.read_csv(tmp_path / "groups" / "kmeans_k4.csv"))


def test_k_larger_than_a_folds_training_set_is_one_line_naming_k_and_fold(tmp_path):
    idi_inputs(tmp_path)
    with pytest.raises(InputError, match=r"k=32 exceeds the 24 training clips of fold 1"):
        run(tmp_path, [2, 32])
    assert not (tmp_path / "groups").exists()


def test_clip_missing_from_speaker_index_is_named(tmp_path):
    files, _, _ = idi_inputs(tmp_path)
    index = pd.read_csv(tmp_path / "speaker" / "index.csv")
    index.loc[index["file"] == files[1], "file"] = "other.wav"
    index.to_csv(tmp_path / "speaker" / "index.csv", index=False)
    with pytest.raises(InputError, match=f"index.csv: no row for clip {files[1]}"):
        run(tmp_path, [2])


def test_kmeans_train_labels_do_not_depend_on_the_dev_clips():
    # One blob of training clips: where k = 3 cuts it depends on every point the fit sees, so a
    # fit that also saw the dev clips (a far, larger blob) would cut it elsewhere.
    rng = np.random.default_rng(0)
    train = rng.standard_normal((60, 2))
    alone, _ = idi.kmeans_groups(train, np.zeros((0, 2)), 3)
    with_near, _ = idi.kmeans_groups(train, rng.standard_normal((5, 2)), 3)
    with_far, dev = idi.kmeans_groups(train, rng.standard_normal((90, 2)) + [8.0, 0.0], 3)
    np.testing.assert_array_equal(with_near, alone)
    np.testing.assert_array_equal(with_far, alone)
    assert len(dev) == 90 and set(dev) <= set(alone)  # dev clips are assigned, not fitted


def test_groups_stage_fits_kmeans_on_training_clips_only(tmp_path):
    # Moving fold 1's dev clips far away (they are test clips in fold 2) leaves every training
    # clip's cluster unchanged, in both folds.
    for name in ("a", "b"):
        files, _, _ = idi_inputs(tmp_path / name)
    folds = pd.read_csv(tmp_path / "b" / "split" / "folds.csv")
    dev1 = set(folds.loc[(folds["fold"] == 1) & (folds["split"] == "dev"), "file"])
    index = pd.read_csv(tmp_path / "b" / "speaker" / "index.csv")
    emb = np.load(tmp_path / "b" / "speaker" / "embeddings.npy")
    emb[index["file"].isin(dev1).to_numpy()] += 50.0
    np.save(tmp_path / "b" / "speaker" / "embeddings.npy", emb)
    groups = {}
    for name in ("a", "b"):
        run(tmp_path / name, [3])
        df = pd.read_csv(tmp_path / name / "groups" / "kmeans_k3.csv")
        groups[name] = df[df["split"] == "train"].reset_index(drop=True)
    pd.testing.assert_frame_equal(groups["a"], groups["b"])


def test_kmeans_ids_are_integers_and_no_dev_clip_gives_no_dev_id():
    train = np.random.default_rng(1).standard_normal((20, 2))
    labels, dev = idi.kmeans_groups(train, np.zeros((0, 2)), 2)
    assert labels.dtype.kind == "i" and dev.dtype.kind == "i" and dev.shape == (0,)
    _, dev = idi.kmeans_groups(train, train[:3], 2)
    assert dev.dtype.kind == "i" and dev.shape == (3,)


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_batched_hub_classifier_equals_predict_clip_by_clip(tmp_path, norm):
    from transformers import Wav2Vec2ForSequenceClassification

    name = tiny_gender_model(tmp_path / "g", {0: "female", 1: "male"})
    if norm == "layer":  # per-frame norm: padded batches with an attention mask are exact
        model = Wav2Vec2ForSequenceClassification.from_pretrained(name)
        model.config.feat_extract_norm, model.config.do_stable_layer_norm = "layer", True
        torch.manual_seed(1)
        Wav2Vec2ForSequenceClassification(model.config).save_pretrained(name)
    clf = idi.load_pseudo_model(name, threshold_hz=165.0)
    waves = [tone(s, f, seed=i) for i, (s, f) in enumerate([(0.3, 110), (0.5, 230), (0.3, 150), (0.41, 190)])]
    rows, reasons = idi.predict_batch(clf, waves, batch_seconds=4.0)
    assert reasons == [None] * 4
    for wave, row in zip(waves, rows):
        one = clf.predict(wave)
        np.testing.assert_allclose(row, [one["p_male"], one["p_female"]], rtol=0, atol=1e-6)


def test_pitch_rows_follow_the_pseudo_csv_columns():
    clf = idi.load_pseudo_model("pitch", threshold_hz=165.0)
    rows, _ = idi.predict_batch(clf, [tone(0.4, 110)])
    one = clf.predict(tone(0.4, 110))
    np.testing.assert_array_equal(rows[0], [one["p_male"], one["p_female"], one["f0_hz"]])


# ----------------------------------------------------------------------------- any corpus schema

DIALECTS = ["north", "south", "west", "unknown"]  # actor i has DIALECTS[i % 4]; unknown is missing


def dialect_corpus(root):
    """idi_inputs' corpus plus a `dialect` column, and a non-CREMA schema with only that attribute."""
    files, sex, actor_of = idi_inputs(root)
    actors = pd.read_csv(root / "corpus" / "actors.csv")
    actors["dialect"] = [DIALECTS[i % 4] for i in range(len(actors))]
    actors.to_csv(root / "corpus" / "actors.csv", index=False)
    schema = corpus_schema.Schema(classes=("calm", "joy", "anger", "grief"), folds=2, attributes=(
        corpus_schema.Attribute("dialect", "dialect", ("north", "south", "west"), excluded=("unknown",)),))
    corpus_schema.save(schema, root / "corpus")
    dialect = dict(zip(actors["actor"], actors["dialect"]))
    return files, dialect, schema


def test_truth_groups_of_a_three_group_attribute_give_a_missing_value_its_own_id(tmp_path):
    files, dialect, schema = dialect_corpus(tmp_path)
    report = run(tmp_path, [2], schema=schema, truth="dialect")
    gender = pd.read_csv(tmp_path / "groups" / "gender.csv")
    want = {"north": 0, "south": 1, "west": 2, "unknown": 3}  # 3 = len(groups): the missing value
    assert gender["group"].tolist() == [want[dialect[int(f[:4])]] for f in gender["file"]]
    assert set(gender["group"]) == {0, 1, 2, 3}
    # Cluster quality against dialect only, over the clips whose dialect is known.
    quality = pd.read_csv(tmp_path / "groups" / "quality.csv")
    assert quality["attribute"].unique().tolist() == ["dialect"]
    folds = pd.read_csv(tmp_path / "split" / "folds.csv")
    for fold in (1, 2):
        train = folds[(folds["fold"] == fold) & (folds["split"] == "train")]
        known = [dialect[int(f[:4])] for f in train["file"] if dialect[int(f[:4])] != "unknown"]
        share = max(known.count(d) for d in ("north", "south", "west")) / len(known)
        assert quality.query("fold == @fold")["majority_share"].item() == pytest.approx(share)
    assert set(report) == {"majority_share", "kmeans"}
    assert set(report["kmeans"]["k2"]) == {"dialect"}


def test_pseudo_accuracy_is_absent_without_a_gender_attribute(tmp_path, capsys):
    _, _, schema = dialect_corpus(tmp_path)
    report = run(tmp_path, [2], schema=schema, truth="dialect")
    assert "pseudo_accuracy" not in report
    assert not (tmp_path / "groups" / "pseudo_accuracy.csv").exists()
    assert (tmp_path / "groups" / "pseudo.csv").exists()  # the pseudo run set still has its groups
    assert "no gender attribute" in capsys.readouterr().out


def test_gender_only_schema_reports_pseudo_accuracy_and_gender_quality_only(tmp_path):
    idi_inputs(tmp_path)
    schema = corpus_schema.Schema(classes=("calm", "joy", "anger", "grief"), folds=2, attributes=(
        corpus_schema.Attribute("gender", "sex", ("Male", "Female")),))
    report = run(tmp_path, [2], schema=schema, truth="gender")
    assert set(report) == {"pseudo_accuracy", "majority_share", "kmeans"}
    assert set(report["majority_share"]) == {"gender"}
    assert report["kmeans"]["k2"]["gender"]["purity"] == 1.0
    assert (tmp_path / "groups" / "pseudo_accuracy.csv").exists()


def test_group_ids_index_the_attributes_groups_and_missing_is_one_past_them():
    a = corpus_schema.Attribute("dialect", "dialect", ("north", "south", "west"), excluded=("unknown",))
    assert idi.group_ids(["west", None, "north", float("nan"), "south"], a).tolist() == [2, 3, 0, 3, 1]


def test_a_value_outside_the_attributes_groups_is_a_one_line_error_naming_the_row(tmp_path):
    _, _, schema = dialect_corpus(tmp_path)
    actors = pd.read_csv(tmp_path / "corpus" / "actors.csv")
    actors.loc[2, "dialect"] = "east"
    actors.to_csv(tmp_path / "corpus" / "actors.csv", index=False)
    with pytest.raises(InputError, match=r"actors.csv, line 4, column dialect: actor 1003 dialect 'east'"):
        run(tmp_path, [2], schema=schema, truth="dialect")
    assert not (tmp_path / "groups").exists()
