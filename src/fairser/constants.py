"""The few facts that are not the corpus's (the corpus's classes, folds and attributes are data:
fairser.schema, data/corpus/schema.json; CREMA-D's class order is schema.CREMA_D_CLASSES)."""

# CREMA-D file-name emotion codes, e.g. 1001_DFA_ANG_XX.wav.
EMOTION_CODES = {
    "ANG": "angry",
    "SAD": "sad",
    "DIS": "disgust",
    "FEA": "fear",
    "NEU": "neutral",
    "HAP": "happy",
}

SAMPLE_RATE = 16_000

# Label shown on everything made from the generated corpus.
SURROGATE_NOTICE = "surrogate corpus (synthetic stand-in, not speech)"
