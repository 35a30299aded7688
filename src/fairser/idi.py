"""Implicit Demography Inference (IDI): group labels without demographic annotation (paper 3.1).

Two ways to infer groups, next to the ground-truth groups of one attribute (idi.truth):
- pseudo-labelling: a pre-trained gender classifier gives each clip p(male), p(female) (paper: a
  hub model, 94.4% accurate on CREMA-D); offline, a transparent pitch rule (`pitch`);
- unsupervised clustering: MiniBatchKMeans over speaker embeddings, fit per fold on that fold's
  biased training clips, k in idi.k_sweep (paper Table A1 settings, KMEANS_SETTINGS).
Cluster quality is reported against every attribute of the corpus schema (CREMA-D: gender, race,
age group) as purity beside its majority-share baseline (what one cluster would score), NMI and
the adjusted Rand index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.cluster import MiniBatchKMeans
from tqdm import tqdm

from fairser import schema as corpus_schema
from fairser.constants import SAMPLE_RATE
from fairser.errors import InputError
from fairser.features import (ClipJob, HFUpstream, check_wavs, clip_blocks, length_batches, pad_to,
                              resolve_device, run_clips, usable_clips)
from fairser.io import read_csv
from fairser.metrics import adjusted_rand, majority_share, nmi, purity  # noqa: F401 (cluster quality)
from fairser.provenance import load_hf, model_for_stage

PITCH = "pitch"

# Paper Table A1 (scikit-learn 1.2.2). n_init is not in the table; 3 was MiniBatchKMeans' default in
# 1.2.2 (later versions changed it to 'auto' = 1 run for k-means++), so it is pinned here.
KMEANS_SETTINGS = dict(init="k-means++", random_state=42, max_iter=1000, batch_size=32,
                       compute_labels=True, reassignment_ratio=0.01, tol=1e-4, n_init=3)

# Pitch classifier. F0 search range covers adult speech (and the surrogate's tones).
F0_MIN_HZ, F0_MAX_HZ = 60.0, 400.0
FRAME_S, HOP_S = 0.04, 0.01  # 40 ms holds >= 2.4 periods at 60 Hz
VOICING = 0.5  # normalised autocorrelation at the chosen lag needed to call a frame voiced
SILENCE_DB = 30.0  # frames more than this below the loudest frame are not analysed
# p_female = sigmoid(PITCH_SLOPE * ln(F0 / threshold)); 10 puts p = 0.9 at 1.25 x threshold
# (206 Hz for 165 Hz), roughly where the male and female F0 distributions stop overlapping.
PITCH_SLOPE = 10.0


# ----------------------------------------------------------------------------- pseudo gender


def median_f0(wave: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Median fundamental frequency (Hz) over voiced frames; NaN when no frame is voiced.

    Per 40 ms frame (10 ms hop): the biased autocorrelation r(k) of the mean-removed frame,
    normalised by r(0); the lag with the largest r in [sr/400, sr/60] (refined by a parabola
    through its neighbours) gives F0 = sr / lag. Because r decays with k, a periodic frame's
    first period wins over its multiples, avoiding octave-down errors. Frames count as voiced when
    r(lag) >= VOICING and their energy is within SILENCE_DB of the loudest frame.
    """
    n = int(FRAME_S * sr)
    hop = int(HOP_S * sr)
    x = pad_to(np.asarray(wave, dtype=np.float64), n)
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    frames = frames - frames.mean(1, keepdims=True)
    energy = (frames ** 2).sum(1)
    if energy.max() <= 0:
        return float("nan")
    spec = np.fft.rfft(frames, 2 * n)
    r = np.fft.irfft(np.abs(spec) ** 2, 2 * n)[:, :n]
    r = r / np.maximum(r[:, :1], 1e-12)
    lo, hi = int(np.floor(sr / F0_MAX_HZ)), int(np.ceil(sr / F0_MIN_HZ))
    lag = lo + np.argmax(r[:, lo:hi + 1], axis=1)
    rows = np.arange(len(r))
    peak = r[rows, lag]
    left, right = r[rows, lag - 1], r[rows, np.minimum(lag + 1, n - 1)]
    denom = left - 2 * peak + right
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0)
    loud = energy >= energy.max() * 10 ** (-SILENCE_DB / 10)
    voiced = (peak >= VOICING) & loud
    if not voiced.any():
        return float("nan")
    return float(np.median(sr / (lag[voiced] + np.clip(shift[voiced], -0.5, 0.5))))


def pitch_probabilities(f0_hz, threshold_hz: float) -> np.ndarray:
    """(N, 2) [p_male, p_female]: logistic in ln(F0 / threshold); 0.5 each where F0 is unknown."""
    f0 = np.asarray(f0_hz, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        p_female = 1.0 / (1.0 + np.exp(-PITCH_SLOPE * np.log(f0 / threshold_hz)))
    p_female = np.where(np.isfinite(p_female), p_female, 0.5)
    return np.stack([1.0 - p_female, p_female], axis=1)


class PitchClassifier:
    """Offline pseudo-gender model: median F0 against idi.pitch_threshold_hz."""

    name = PITCH

    def __init__(self, threshold_hz: float):
        self.threshold_hz = threshold_hz

    def predict(self, wave: np.ndarray) -> dict:
        f0 = median_f0(wave)
        p_male, p_female = pitch_probabilities([f0], self.threshold_hz)[0]
        return {"p_male": p_male, "p_female": p_female, "f0_hz": f0}


def gender_label_ids(id2label: dict, name: str) -> tuple[list[int], list[int]]:
    """Class ids whose label is 'male' / 'female' (case and spaces ignored); else a one-line error."""
    norm = {int(i): str(label).strip().lower() for i, label in id2label.items()}
    male = [i for i, label in norm.items() if label == "male"]
    female = [i for i, label in norm.items() if label == "female"]
    if not male or not female:
        raise InputError(f"idi.pseudo_model '{name}': its labels {sorted(norm.values())} do not "
                         f"include both 'male' and 'female'")
    return male, female


class HFGenderClassifier:
    """A Hugging Face audio-classification model (hub id or folder) used as a gender classifier.

    p_male, p_female = the softmax mass on the classes labelled male / female in id2label,
    renormalised over the two (so extra classes such as 'child' do not leak probability).
    """

    def __init__(self, name: str, device: torch.device = torch.device("cpu"), revision: str | None = None):
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self.name = name
        self.device = device
        # A hub id at `revision` or a local folder; never runs code shipped with the model.
        self.extractor, self.model = load_hf("idi.pseudo_model", name, revision, AutoFeatureExtractor,
                                             AutoModelForAudioClassification)
        self.male, self.female = gender_label_ids(self.model.config.id2label, name)
        if getattr(self.extractor, "sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise InputError(f"idi.pseudo_model '{name}' expects {self.extractor.sampling_rate} Hz "
                             f"audio; the corpus is {SAMPLE_RATE} Hz")
        self.min_samples = HFUpstream._min_samples(self.model.config)
        self.model.eval().to(device)

    @torch.inference_mode()
    def predict(self, wave: np.ndarray) -> dict:
        inputs = self.extractor(pad_to(wave, self.min_samples), sampling_rate=SAMPLE_RATE,
                                return_tensors="pt")
        logits = self.model(inputs["input_values"].to(self.device)).logits[0]
        p = torch.softmax(logits.double(), dim=-1).cpu().numpy()
        p_male, p_female = p[self.male].sum(), p[self.female].sum()
        total = p_male + p_female
        return {"p_male": p_male / total, "p_female": p_female / total}


def load_pseudo_model(name: str, *, threshold_hz: float, device: torch.device = torch.device("cpu"),
                      revision: str | None = None):
    """`pitch` or a Hugging Face audio-classification id (at `revision`) / folder."""
    return PitchClassifier(threshold_hz) if name == PITCH else HFGenderClassifier(name, device, revision)


PSEUDO_COLUMNS = ("p_male", "p_female", "f0_hz")  # pseudo.csv after `file`; f0_hz for pitch only


@torch.inference_mode()
def hf_predict_batch(clf: HFGenderClassifier, waves: list[np.ndarray], batch_seconds: float):
    """HFGenderClassifier.predict for many clips: length-bucketed batches, zero-padded with an
    attention mask when the model's conv encoder normalises per frame (feat_extract_norm
    "layer"; its sequence-classification head then pools only valid frames), else batches of
    equal-length clips only (group norm over time would see the padding; see fairser.features).
    Rows are [p_male, p_female], equal to predict's to float tolerance (tests/test_idi.py)."""
    waves = [pad_to(w, clf.min_samples) for w in waves]
    padding = getattr(clf.model.config, "feat_extract_norm", None) == "layer"
    rows: list = [None] * len(waves)
    for batch in length_batches([len(w) for w in waves], batch_seconds * SAMPLE_RATE,
                                allow_padding=padding):
        inputs = clf.extractor([waves[i] for i in batch], sampling_rate=SAMPLE_RATE, padding=True,
                               return_attention_mask=True, return_tensors="pt")
        kwargs = {"attention_mask": inputs["attention_mask"].to(clf.device)} if padding else {}
        logits = clf.model(inputs["input_values"].to(clf.device), **kwargs).logits
        p = torch.softmax(logits.double(), dim=-1).cpu().numpy()
        p_male, p_female = p[:, clf.male].sum(1), p[:, clf.female].sum(1)
        total = p_male + p_female
        for j, i in enumerate(batch):
            rows[i] = np.array([p_male[j] / total[j], p_female[j] / total[j]])
    return rows, [None] * len(waves)


def predict_batch(clf, waves: list[np.ndarray], batch_seconds: float = 64.0):
    """fairser.engine's batched pass: (rows, reasons), rows in PSEUDO_COLUMNS order (the pitch
    rule is per clip and cheap; a hub classifier is batched, hf_predict_batch)."""
    if isinstance(clf, HFGenderClassifier):
        return hf_predict_batch(clf, waves, batch_seconds)
    rows = []
    for wave in waves:
        out = clf.predict(wave)
        rows.append(np.array([out[c] for c in PSEUDO_COLUMNS if c in out], dtype=np.float64))
    return rows, [None] * len(waves)


@dataclass(frozen=True)
class PseudoJob(ClipJob):
    """fairser.engine's job for the pseudo stage: the classifier's name, the pitch rule's
    threshold, device (params value; the pseudo stage reads speaker.device), the padded-audio
    budget of one forward pass and the hub revision; plain values, so Ray can send it to its
    actors."""

    model: str
    threshold_hz: float
    device: str = "auto"
    batch_seconds: float = 64.0
    revision: str | None = None
    name = "pseudo"

    def load(self):
        return load_pseudo_model(self.model, threshold_hz=self.threshold_hz,
                                 device=resolve_device(self.device, key="speaker.device"),
                                 revision=self.revision)

    def process(self, clf, waves: list[np.ndarray]):
        return predict_batch(clf, waves, self.batch_seconds)


def run_pseudo(corpus: str | Path, out: str | Path, *, model: str, threshold_hz: float,
               device: str = "auto", progress: bool = True, revision: str | None = None,
               fingerprint: dict | None = None, compute: dict | None = None,
               batch_seconds: float = 64.0) -> None:
    """Stage `pseudo`: data/corpus -> data/pseudo/pseudo.csv (file, p_male, p_female[, f0_hz]) and
    info.json (`model`: the classifier with its revision or content hash, fairser.provenance).

    `compute` picks the engine (fairser.engine); clips go in length-bucketed blocks of
    `batch_seconds` of audio.
    """
    import json

    from fairser.io import atomic_dir

    files = usable_clips(corpus)
    wav_dir = Path(corpus) / "wav"
    lengths = check_wavs(wav_dir, files)
    load_rev, model_info = model_for_stage("idi.pseudo_model", model, revision, fingerprint)
    job = PseudoJob(model, float(threshold_hz), device, batch_seconds, load_rev)
    local = (compute or {}).get("engine", "local") == "local"
    clf = job.load() if local else None
    values = run_clips(job, files, wav_dir, clip_blocks(lengths, batch_seconds), compute=compute,
                       model=clf, progress=progress, desc=f"pseudo ({model})")
    df = pd.DataFrame(values, columns=list(PSEUDO_COLUMNS[:values.shape[1]]))
    df.insert(0, "file", files)
    with atomic_dir(out) as tmp:
        df.to_csv(tmp / "pseudo.csv", index=False, float_format="%.6g")
        info = {"model": model_info, "clips": len(df)}
        (tmp / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- cluster quality


# ----------------------------------------------------------------------------- k-means groups


def kmeans_groups(train_emb: np.ndarray, dev_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ids for the training clips (fit, Table A1 settings) and the dev clips (predict)."""
    km = MiniBatchKMeans(n_clusters=k, **KMEANS_SETTINGS)
    km.fit(np.asarray(train_emb, dtype=np.float64))
    dev = km.predict(np.asarray(dev_emb, dtype=np.float64)) if len(dev_emb) else np.empty(0, int)
    return km.labels_.astype(int), dev.astype(int)


def _attributes(corpus: Path, schema: corpus_schema.Schema) -> pd.DataFrame:
    """file -> group name (None when missing) per schema attribute, from clips.csv + actors.csv."""
    clips = read_csv(corpus / "clips.csv", ("file", "actor"), dtype={"file": str})
    actors = read_csv(corpus / "actors.csv", ("actor", *(a.column for a in schema.attributes)))
    return corpus_schema.clip_groups(clips, actors, schema, corpus / "actors.csv").set_index("file")


def _names(values) -> np.ndarray:
    """Group names as an object array, None where missing (pandas may hold a None as NaN)."""
    return np.array([None if pd.isna(v) else v for v in values], dtype=object)


def group_ids(names, attribute: corpus_schema.Attribute) -> np.ndarray:
    """Group names -> ids: the index in attribute.groups; None (missing) -> len(groups)."""
    index = {g: i for i, g in enumerate(attribute.groups)}
    return np.array([len(attribute.groups) if v is None else index[v] for v in _names(names)], dtype=int)


def _rows_for(table: pd.DataFrame, files, what: Path) -> np.ndarray:
    missing = [f for f in files if f not in table.index]
    if missing:
        raise InputError(f"{what}: no row for clip {missing[0]} ({len(missing)} missing)")
    return table.loc[list(files)]


def _mean(values) -> float:
    return round(float(np.mean(list(values))), 6)


def run_groups(corpus: str | Path, split: str | Path, speaker: str | Path, pseudo: str | Path,
               out: str | Path, metrics: str | Path, *, ks: list[int], schema: corpus_schema.Schema,
               truth: str, progress: bool = True) -> None:
    """Stage `groups`: per fold, group ids for the train and dev rows of folds.csv.

    Writes gender.csv, pseudo.csv (with p_0, p_1) and kmeans_k<K>.csv (columns fold, file, split,
    group) into `out` with the per-fold detail (quality.csv: k, fold, attribute, purity,
    majority_share, nmi, adjusted_rand of the training clips' clusters, one row per attribute of
    `schema`; pseudo_accuracy.csv: fold ("all" = every clip of the corpus), accuracy), and the
    means over folds into `metrics`: pseudo_accuracy.mean, majority_share.<attribute>,
    kmeans.k<K>.<attribute>.purity. Headline numbers only, so `dvc metrics show` stays short
    (issue 9).

    gender.csv (the name is kept whatever the attribute) holds the ground-truth groups of
    `truth` (schema.truth_attribute): group id = the index of the clip's group in that
    attribute's `groups` (gender: 0 = Male, 1 = Female). A clip whose value is missing (an
    excluded value such as race "Unknown", None from schema.clip_groups) gets one extra group
    id, len(groups): group methods see it as a group of its own instead of dropping it.
    Pseudo accuracy compares the pseudo-gender classifier with the `gender` attribute, so it
    (pseudo_accuracy.csv and its metrics key) exists only when the schema has `gender`; clips of
    a missing gender are left out of it. Cluster quality skips clips whose value is missing.
    """
    from fairser.io import atomic_dir, write_json

    corpus, split, speaker, pseudo = map(Path, (corpus, split, speaker, pseudo))
    attrs = _attributes(corpus, schema)
    folds = read_csv(split / "folds.csv", ("fold", "file", "split"), dtype={"file": str})
    rows = folds[folds["split"].isin(["train", "dev"])][["fold", "file", "split"]].reset_index(drop=True)
    if rows.empty:
        raise InputError(f"{split / 'folds.csv'}: no train or dev rows")
    index = read_csv(speaker / "index.csv", ("file",), dtype={"file": str})
    emb = np.load(speaker / "embeddings.npy", mmap_mode="r")
    if len(emb) != len(index):
        raise InputError(f"{speaker / 'embeddings.npy'}: {len(emb)} rows but index.csv lists {len(index)}")
    emb_rows = pd.Series(np.arange(len(index)), index=index["file"])
    pseudo_df = read_csv(pseudo / "pseudo.csv", ("file", "p_male", "p_female"),
                          dtype={"file": str}).set_index("file")
    files = rows["file"].tolist()
    a = _rows_for(attrs, files, corpus / "clips.csv")
    e_idx = _rows_for(emb_rows.to_frame("row"), files, speaker / "index.csv")["row"].to_numpy()
    p = _rows_for(pseudo_df, files, pseudo / "pseudo.csv")

    # Every k must fit every fold before any clustering starts.
    n_train = rows[rows["split"] == "train"].groupby("fold").size()
    for k in ks:
        for fold, n in n_train.items():
            if k > n:
                raise InputError(f"idi.k_sweep / idi.k: k={k} exceeds the {n} training clips of fold {fold}")

    tables = {"gender": rows.assign(group=group_ids(a[truth].to_numpy(), schema.attribute(truth)))}
    p0 = p["p_male"].to_numpy(dtype=float)
    p1 = p["p_female"].to_numpy(dtype=float)
    tables["pseudo"] = rows.assign(group=(p1 > p0).astype(int), p_0=p0, p_1=p1)

    report = {}
    pseudo_rows = None
    if schema.has("gender"):
        g_attr = schema.attribute("gender")
        gender = group_ids(a["gender"].to_numpy(), g_attr)
        known = gender < len(g_attr.groups)
        acc = {fold: float(((p1 > p0).astype(int)[m] == gender[m]).mean())
               for fold, m in ((f, (rows["fold"] == f).to_numpy() & known)
                               for f in sorted(rows["fold"].unique()))}
        all_files = [f for f in pseudo_df.index if f in attrs.index and pd.notna(attrs.at[f, "gender"])]
        pa = pseudo_df.loc[all_files]
        all_gender = group_ids(attrs.loc[all_files, "gender"].to_numpy(), g_attr)
        all_acc = float(((pa["p_female"] > pa["p_male"]).astype(int).to_numpy() == all_gender).mean())
        pseudo_rows = [{"fold": str(f), "accuracy": round(v, 6)} for f, v in acc.items()]
        pseudo_rows.append({"fold": "all", "accuracy": round(all_acc, 6)})
        report["pseudo_accuracy"] = {"mean": _mean(acc.values())}
    else:
        print("groups: the corpus has no gender attribute; pseudo-gender accuracy is not reported")

    targets = {name: _names(a[name]) for name in schema.attribute_names}
    jobs = [(k, fold) for k in ks for fold in sorted(rows["fold"].unique())]
    groups = {k: np.full(len(rows), -1) for k in ks}
    quality = []
    for k, fold in tqdm(jobs, desc="groups (k-means)", unit="fit", disable=not progress):
        in_fold = (rows["fold"] == fold).to_numpy()
        # Fit on training clips sorted by file name, so the mini-batch draws ignore row order.
        train = np.flatnonzero(in_fold & (rows["split"] == "train").to_numpy())
        train = train[np.argsort(rows["file"].to_numpy()[train], kind="stable")]
        dev = np.flatnonzero(in_fold & (rows["split"] == "dev").to_numpy())
        groups[k][train], groups[k][dev] = kmeans_groups(emb[e_idx[train]], emb[e_idx[dev]], k)
        for t, values in targets.items():
            keep = train[np.array([v is not None for v in values[train]], dtype=bool)]  # no missing
            if len(keep) == 0:
                continue
            c, lab = groups[k][keep], values[keep]
            quality.append({"k": k, "fold": int(fold), "attribute": t,
                            "purity": purity(clusters=c, labels=lab),
                            "majority_share": majority_share(lab), "nmi": nmi(clusters=c, labels=lab),
                            "adjusted_rand": adjusted_rand(clusters=c, labels=lab)})
    quality = pd.DataFrame(quality, columns=["k", "fold", "attribute", "purity", "majority_share", "nmi",
                                             "adjusted_rand"])
    # The baseline depends on the fold's clips only, not on K: one value per attribute.
    base = quality[quality["k"] == ks[0]] if len(quality) else quality
    report["majority_share"] = {t: _mean(part["majority_share"]) for t, part in base.groupby("attribute")}
    report["kmeans"] = {}
    for k in ks:
        tables[f"kmeans_k{k}"] = rows.assign(group=groups[k])
        part = quality[quality["k"] == k]
        if len(part):
            report["kmeans"][f"k{k}"] = {t: {"purity": _mean(q["purity"])}
                                         for t, q in part.groupby("attribute")}

    with atomic_dir(out) as tmp:
        for name, table in tables.items():
            table.to_csv(tmp / f"{name}.csv", index=False, float_format="%.6g")
        quality.to_csv(tmp / "quality.csv", index=False, float_format="%.6g")
        if pseudo_rows is not None:
            pd.DataFrame(pseudo_rows).to_csv(tmp / "pseudo_accuracy.csv", index=False)
    write_json(metrics, report)
