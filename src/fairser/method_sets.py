"""The method names and run sets, written once: fairser.config validates params against them,
fairser.train trains them, fairser.evaluate and the report read their folders. A bottom-layer
module (it imports nothing), so config need not import the debias registry; tests check that the
registry (fairser.debias) holds exactly these methods.

- GROUP_METHODS: the paper's four methods that take IDI groups; its "Overall" row is their mean.
- EXTENSION_GROUP_METHODS: issue 24's group-supervised peers (adversarial, regularisation,
  augmentation, last-layer), trained on the same three supervisions as GROUP_METHODS.
- EXTENSIONS: every method beyond the paper's and issue 13's that `train.extensions` (params.yaml)
  may switch off to keep the default pipeline within its time budget; AFR is group-free.
"""

GROUP_METHODS = ("rw", "ds", "gdro", "gadro")
EXTENSION_GROUP_METHODS = ("adv", "eopp", "mmd", "mixup", "dfr")
EXTENSIONS = EXTENSION_GROUP_METHODS + ("afr",)

# Run sets (one train_* stage each) -> their methods, in output order. JTT, GEORGE, DFR and AFR
# read the (fold, seed)'s ERM run as their phase 1. The k-means clusters of every k of idi.k_sweep
# train the paper's methods (Fig. 2 and 3, Table 2); issue 24's group methods train on the
# clusters of idi.k only (Table 1's k-means rows), in a set of their own, so the sweep's stages do
# not pay for them and `train.extensions` does not retrain the sweep.
SETS = {
    "baselines": ("erm", "random", "lff", "disent", "jtt", "george", "afr"),
    "gender": GROUP_METHODS + EXTENSION_GROUP_METHODS,
    "pseudo": GROUP_METHODS + ("pgdro",) + EXTENSION_GROUP_METHODS,
    "kmeans": GROUP_METHODS,
    "kmeans_extensions": EXTENSION_GROUP_METHODS,
}
# Sets trained on the k-means clusters of one k (`--k`).
KMEANS_SETS = ("kmeans", "kmeans_extensions")
# data/runs/kmeans_extensions/set.json: {"set": "kmeans_k<K>"}, the k-means set its runs join.
SET_FILE = "set.json"

# Every method name (a runs folder), in first-appearance order; "random" is not trained.
METHODS = tuple(dict.fromkeys(m for methods in SETS.values() for m in methods))
