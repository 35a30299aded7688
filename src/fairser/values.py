"""One normalisation of speaker ids and demographic values, shared by every importer and the audit.

Real metadata spells one group many ways (`Male`, `male`, `M`, `Male `) and one speaker id many
ways (`01`, `1`, ` 1`). Everything that reads such values folds them here, so a corpus and an
audit of it always agree on who is who and which group is which.

- `speaker_id`: surrounding spaces dropped; an id made only of digits loses its leading zeros.
- `normalise`: per attribute, values that differ only by case or surrounding / repeated spaces
  are one group; gender also folds its usual spellings (GENDER_SPELLINGS) to `Male` / `Female`.
  The result carries the mapping applied (every raw spelling that changed), for the reports.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from fairser.errors import InputError

GENDER_GROUPS = ("Male", "Female")  # group id 0 = Male, 1 = Female everywhere
GENDER_SPELLINGS = {
    "m": "Male", "male": "Male", "man": "Male", "men": "Male", "boy": "Male",
    "f": "Female", "female": "Female", "woman": "Female", "women": "Female", "girl": "Female",
}
_DIGITS = re.compile(r"\d+")


def fold(value) -> str:
    """The comparison key of a value: case-folded, surrounding spaces dropped, inner runs of
    whitespace one space."""
    return " ".join(str(value).split()).casefold()


def speaker_id(value) -> str:
    """A speaker id as one spelling: spaces around it dropped, and leading zeros dropped when it is
    all digits (`" 01"`, `"1"` -> `"1"`; `"007a"` stays `"007a"`)."""
    text = str(value).strip()
    if _DIGITS.fullmatch(text):
        return str(int(text))
    return text


def speaker_ids(values) -> tuple[list[str], dict[str, str]]:
    """speaker_id of each value, and {raw: id} for the raw spellings it changed."""
    out = [speaker_id(v) for v in values]
    return out, {str(v): s for v, s in zip(values, out) if str(v) != s}


@dataclass
class Normalised:
    """Values folded to one spelling per group; `mapping` = {raw spelling: group} for every raw
    spelling that was changed (for the reports); `unknown` = raw values that stayed empty."""

    values: list[str]
    mapping: dict[str, str] = field(default_factory=dict)

    def describe(self, name: str) -> str:
        """One line for a report: `gender: 'M' -> Male, 'female ' -> Female` or `gender: as given`."""
        if not self.mapping:
            return f"{name}: values as given"
        return f"{name}: " + ", ".join(f"{raw!r} -> {group}" for raw, group in sorted(self.mapping.items()))


def describe(mappings: dict[str, dict[str, str]]) -> str:
    """One line for a report of every mapping applied, {attribute: {raw: group}}: `speaker: '01' -> 1;
    gender: 'M' -> Male`; "" when nothing was changed."""
    return "; ".join(Normalised([], m).describe(name) for name, m in mappings.items() if m)


def is_numeric(values) -> bool:
    """True when every non-empty value reads as a number (and there is at least one)."""
    present = [str(v).strip() for v in values if str(v).strip() != ""]
    if not present:
        return False
    try:
        [float(v) for v in present]
    except ValueError:
        return False
    return True


def normalise(values, name: str, *, groups=None, excluded=(), keep_values: bool = False,
              where: str = "", hint: str = "") -> Normalised:
    """Fold the values of attribute `name` to one spelling per group.

    Empty values stay "" (unknown). `gender` folds GENDER_SPELLINGS to Male / Female; any other
    attribute takes, for each fold() key, its most frequent raw spelling (stripped; ties: the first
    in sorted order) unless `groups` names the group, whose spelling then wins. A value listed in
    `excluded` (compared folded) keeps the excluded spelling. With `groups` given (gender: always
    Male, Female), a value that folds to none of them is an InputError listing every such value
    (`where` and `hint` begin and end the line), unless `keep_values`: then it stays a group of its own.
    """
    raw = ["" if v is None else str(v) for v in values]
    known = {fold(g): str(g) for g in (GENDER_GROUPS if name == "gender" and groups is None else groups or ())}
    if name == "gender":
        known.update({k: g for k, g in GENDER_SPELLINGS.items() if g in known.values()})
    excluded_by_key = {fold(e): str(e) for e in excluded}
    spellings: dict[str, Counter] = {}
    for v in raw:
        if v.strip():
            spellings.setdefault(fold(v), Counter())[v.strip()] += 1
    canonical: dict[str, str] = {}
    unmapped: list[str] = []
    for key, counts in spellings.items():
        if key in excluded_by_key:
            canonical[key] = excluded_by_key[key]
        elif key in known:
            canonical[key] = known[key]
        else:
            if known and not keep_values:
                unmapped.extend(sorted(counts))
            canonical[key] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    if unmapped:
        expected = ", ".join(dict.fromkeys(known.values()))
        raise InputError(f"{where + ': ' if where else ''}{name} values {', '.join(map(repr, sorted(unmapped)))} "
                         f"are none of {expected}{'; ' + hint if hint else ''}")
    out = [canonical[fold(v)] if v.strip() else "" for v in raw]
    return Normalised(out, {r: o for r, o in zip(raw, out) if r != o and r.strip()})
