"""Facts every module shares: class order, group names, thresholds (../shared/SPEC.md sections 1, 5).

Defined once here; everything else imports them.
"""

# EMO-SUPERB class order (config.json "emo_type"); every (N, 6) array in the project uses it.
EMOTIONS = ("angry", "sad", "disgust", "fear", "neutral", "happy")

# CREMA-D file-name emotion codes, e.g. 1001_DFA_ANG_XX.wav.
EMOTION_CODES = {
    "ANG": "angry",
    "SAD": "sad",
    "DIS": "disgust",
    "FEA": "fear",
    "NEU": "neutral",
    "HAP": "happy",
}

# A class is present in the multi-label target iff p_k > 1/6 (strict), and a prediction is
# positive iff its softmax probability > 1/6 (SPEC section 5).
POSITIVE_THRESHOLD = 1.0 / len(EMOTIONS)

SAMPLE_RATE = 16_000

SPLITS = ("train", "dev", "test")
N_FOLDS = 5

GENDERS = ("Male", "Female")
RACES = ("Caucasian", "African American", "Asian")  # "Unknown" is left out of race metrics
# Age groups (inclusive bounds), SPEC section 1.
AGE_GROUPS = {"Young": (20, 35), "Middle": (36, 49), "Elderly": (50, 75)}

# Label shown on everything made from the generated corpus.
SURROGATE_NOTICE = "surrogate corpus (synthetic stand-in, not speech)"


def age_group(age: int) -> str:
    """Map an age in years to its SPEC section 1 group name."""
    for name, (lo, hi) in AGE_GROUPS.items():
        if lo <= age <= hi:
            return name
    raise ValueError(f"age {age} is outside every age group {AGE_GROUPS}")
