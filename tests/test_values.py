"""fairser.values: the one normalisation of speaker ids and attribute values."""

import pytest

from fairser.errors import InputError
from fairser.values import fold, is_numeric, normalise, speaker_id, speaker_ids


def test_speaker_ids_differing_only_by_leading_zeros_or_spaces_are_one():
    assert {speaker_id(v) for v in ("01", "1", " 1", "001 ")} == {"1"}
    assert speaker_id("007a") == "007a"  # not all digits: kept as written
    assert speaker_id(" spk01 ") == "spk01"
    ids, mapping = speaker_ids(["01", "2", "spk"])
    assert ids == ["1", "2", "spk"] and mapping == {"01": "1"}


def test_mixed_gender_spellings_fold_to_two_groups_with_the_mapping():
    raw = ["Male", "male", "M", "Female", "female ", "F", "Woman", "man", ""]
    out = normalise(raw, "gender")
    assert out.values == ["Male", "Male", "Male", "Female", "Female", "Female", "Female", "Male", ""]
    assert out.mapping == {"male": "Male", "M": "Male", "female ": "Female", "F": "Female",
                           "Woman": "Female", "man": "Male"}
    assert "'M' -> Male" in out.describe("gender")


def test_a_gender_value_that_folds_to_nothing_is_one_line_listing_every_such_value():
    with pytest.raises(InputError, match=r"speakers.csv: gender values 'X', 'other' are none of Male, Female; "
                                         r"pass --keep-values"):
        normalise(["Male", "other", "X", "F"], "gender", where="speakers.csv", hint="pass --keep-values")


def test_keep_values_keeps_an_unknown_value_as_its_own_group_and_excluded_values_stay_excluded():
    assert normalise(["Male", "Other", "other "], "gender", keep_values=True).values == ["Male", "Other", "Other"]
    assert normalise(["M", "unknown"], "gender", excluded=("Unknown",)).values == ["Male", "Unknown"]


def test_other_attributes_fold_case_and_spaces_to_the_most_frequent_spelling():
    out = normalise(["Asian", "asian", "Asian ", "Caucasian", "CAUCASIAN", "caucasian", "caucasian"], "race")
    assert out.values == ["Asian"] * 3 + ["caucasian"] * 4
    # Declared groups win over the data's spellings, and anything else is an error.
    declared = normalise(["asian", "CAUCASIAN"], "race", groups=("Caucasian", "Asian"))
    assert declared.values == ["Asian", "Caucasian"]
    with pytest.raises(InputError, match="race values 'Martian'"):
        normalise(["Asian", "Martian"], "race", groups=("Caucasian", "Asian"))


def test_fold_and_is_numeric():
    assert fold("  Male\t ") == fold("male") == "male"
    assert is_numeric(["18", " 30.5", ""]) and not is_numeric(["18", "young"]) and not is_numeric(["", " "])
