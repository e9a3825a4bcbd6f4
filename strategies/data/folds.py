"""Speaker-independent folds over a manifest, and their JSON file format.

Protocol rules (docs/datasets.md explains them to users):

- Test utterances of a fold never share a speaker with its training or validation utterances;
  the validation split is made of whole TRAINING speakers, never a random utterance split.
- The test fold is for the final measurement only: the search and model selection (best epoch,
  best architecture) use the validation split.
- Utterances whose speaker is unknown (``"unknown"``, e.g. MSP-Podcast) cannot be kept apart
  from any speaker, so speaker-based protocols leave them out (with a warning); the
  ``official`` protocol uses the corpus's own partitions as they are.
- Everything is a pure function of the manifest, the arguments and ``seed``.

Protocols: ``loso`` (one fold per speaker), ``loo-session`` (one fold per session),
``kfold-speaker`` (k speaker groups balanced by utterance count), ``speaker-groups`` (explicit
test speaker groups, e.g. the IEMOCAP protocol of Rajapakshe et al. in
:data:`IEMOCAP_AUTHORS_TEST_GROUPS`) and ``official`` (the ``split`` column).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from strategies.data.corpora import UNKNOWN_SPEAKER, get_corpus
from strategies.data.errors import DataError
from ser_space.io import write_atomically

__all__ = [
    "FOLDS_FORMAT",
    "IEMOCAP_AUTHORS_TEST_GROUPS",
    "PROTOCOLS",
    "Fold",
    "FoldProtocol",
    "Protocol",
    "default_protocol",
    "folds_to_frame",
    "load_folds",
    "make_folds",
    "save_folds",
]

logger = logging.getLogger(__name__)

Protocol = Literal["loso", "loo-session", "kfold-speaker", "speaker-groups", "official"]
#: Names of the fold protocols :func:`make_folds` implements.
PROTOCOLS: tuple[str, ...] = get_args(Protocol)
#: ``format`` field of fold files written by :func:`save_folds`.
FOLDS_FORMAT = "ser-nas-folds"
_FOLDS_VERSION = 1
#: The authors' IEMOCAP protocol (PAPER.md section 7): 5 folds, each testing two speakers.
IEMOCAP_AUTHORS_TEST_GROUPS: tuple[tuple[str, ...], ...] = (
    ("1M", "2F"), ("2M", "3F"), ("3M", "4F"), ("4M", "5F"), ("5M", "1F"),
)
_PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Fold:
    """One train / validation / test partition of a manifest, by utterance id."""

    # position in the fold list, from 0
    index: int
    # readable name: "speaker-03", "session-1", "group-2", "official"
    name: str
    # protocol that made it (one of PROTOCOLS)
    protocol: str
    # utterance ids used to fit the model weights (sorted)
    train: tuple[str, ...]
    # utterance ids of held-out TRAINING speakers, for search and model selection (sorted)
    val: tuple[str, ...]
    # utterance ids of the test speakers, touched once for the final figures (sorted)
    test: tuple[str, ...]
    # speakers of the test utterances (sorted; "unknown" never appears)
    test_speakers: tuple[str, ...]
    # speakers of the validation utterances (sorted)
    val_speakers: tuple[str, ...]
    # sessions of the test utterances (sorted; ("",) for corpora without sessions)
    test_sessions: tuple[str, ...]

    def frames(self, manifest: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The manifest rows of train, val and test, each in manifest order.

        Raises
        ------
        DataError
            If an utterance id of the fold is not in the manifest.
        """
        _check_ids(self, set(manifest["utt_id"]), "manifest")
        return tuple(  # type: ignore[return-value]
            manifest.loc[manifest["utt_id"].isin(set(getattr(self, part)))].reset_index(
                drop=True)
            for part in _PARTS
        )


@dataclass(frozen=True)
class FoldProtocol:
    """A fold protocol and its fold count, as :func:`make_folds` takes them."""

    # protocol name (one of PROTOCOLS)
    protocol: Protocol
    # number of folds for kfold-speaker; None otherwise
    k: int | None = None


def default_protocol(corpus_name: str) -> FoldProtocol:
    """The standard protocol of a registered corpus.

    iemocap and msp-improv: ``loo-session``; msp-podcast: ``official``; ravdess and crema-d:
    ``kfold-speaker`` with k = 5; emodb, folder and csv: ``loso``.

    Raises
    ------
    DataError
        If the corpus is not registered.
    """
    spec = get_corpus(corpus_name)
    return FoldProtocol(protocol=spec.protocol, k=spec.k)  # type: ignore[arg-type]


def make_folds(
    manifest: pd.DataFrame,
    protocol: Protocol,
    k: int | None = None,
    val_speakers: int | float = 1,
    seed: int = 0,
    test_groups: Sequence[Sequence[str]] | None = None,
    test_split: str = "Test1",
) -> list[Fold]:
    """Split a manifest into speaker-independent folds.

    Parameters
    ----------
    manifest
        Output of :func:`strategies.data.corpora.load_manifest`.
    protocol
        ``loso``, ``loo-session``, ``kfold-speaker``, ``speaker-groups`` or ``official``.
    k
        Number of speaker groups for ``kfold-speaker`` (default 5); must be None otherwise.
    val_speakers
        Training speakers moved to the validation split in each fold: a count (int >= 0) or
        a fraction of the fold's training speakers (float in (0, 1)). Ignored by ``official``,
        which uses the ``Development`` partition.
    seed
        Seeds the validation speakers and the ``kfold-speaker`` grouping (int >= 0).
    test_groups
        For ``speaker-groups``: one sequence of test speakers per fold.
    test_split
        For ``official``: the partition used as test (``Train`` trains, ``Development``
        validates).

    Returns
    -------
    list of Fold
        In a fixed order: sorted speakers, sessions, group numbers.

    Raises
    ------
    DataError
        Unknown protocol, missing columns, fewer than 2 speakers or sessions, more folds than
        speakers, unknown speakers in ``test_groups``, empty official partitions.
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown fold protocol {protocol!r}; available: {', '.join(PROTOCOLS)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    if protocol != "kfold-speaker" and k is not None:
        raise DataError(f"k applies to protocol kfold-speaker only, not {protocol}")
    _check_val_speakers(val_speakers)
    missing = {"utt_id", "speaker", "emotion"} - set(manifest.columns)
    if missing:
        raise DataError(f"manifest lacks column(s) {', '.join(sorted(missing))}")
    if protocol == "official":
        folds = [_official_fold(manifest, test_split)]
    else:
        usable = _known_speakers(manifest)
        if protocol == "loo-session":
            units = _session_units(usable)
        elif protocol == "loso":
            units = [(f"speaker-{s}", {s}) for s in _sorted(usable["speaker"])]
            _need_two(units, "speakers", "loso")
        elif protocol == "kfold-speaker":
            units = _speaker_groups(usable, 5 if k is None else k, seed)
        else:
            units = _explicit_groups(usable, test_groups)
        folds = [
            _speaker_fold(usable, index, name, protocol, test_speakers, val_speakers, seed)
            for index, (name, test_speakers) in enumerate(units)
        ]
    _warn_missing_classes(manifest, folds)
    return folds


# --- protocol pieces ---------------------------------------------------------------------------


def _sorted(values: pd.Series | Sequence[str]) -> list[str]:
    """Unique values in natural order ("2" before "10")."""
    return sorted(set(values), key=lambda v: [int(t) if t.isdigit() else t
                                              for t in re.split(r"(\d+)", v)])


def _check_val_speakers(val_speakers: int | float) -> None:
    if isinstance(val_speakers, bool) or not isinstance(val_speakers, (int, float, np.number)):
        raise DataError(f"val_speakers must be a count or a fraction, got {val_speakers!r}")
    if isinstance(val_speakers, (int, np.integer)):
        if val_speakers < 0:
            raise DataError(f"val_speakers must be >= 0, got {val_speakers}")
    elif not 0 < val_speakers < 1:
        raise DataError(f"val_speakers as a fraction must be in (0, 1), got {val_speakers}")


def _need_two(units: Sequence[object], what: str, protocol: str) -> None:
    if len(units) < 2:
        raise DataError(f"protocol {protocol} needs at least 2 {what}, the manifest has "
                        f"{len(units)}")


def _known_speakers(manifest: pd.DataFrame) -> pd.DataFrame:
    """Rows whose speaker is known; the others cannot be kept apart from anyone."""
    unknown = manifest["speaker"].isin({UNKNOWN_SPEAKER, ""})
    if unknown.any():
        logger.warning("folds: %d utterances with an unknown speaker are left out of every "
                       "fold (a speaker-independent split cannot place them)", int(unknown.sum()))
    return manifest.loc[~unknown]


def _session_units(manifest: pd.DataFrame) -> list[tuple[str, set[str]]]:
    if "session" not in manifest.columns or (manifest["session"] == "").all():
        raise DataError("protocol loo-session needs a session column with values; this manifest "
                        "has none (use loso or kfold-speaker)")
    units = []
    for session in _sorted(manifest["session"]):
        speakers = set(manifest.loc[manifest["session"] == session, "speaker"])
        units.append((f"session-{session}", speakers))
    _need_two(units, "sessions", "loo-session")
    return units


def _speaker_groups(manifest: pd.DataFrame, k: int, seed: int) -> list[tuple[str, set[str]]]:
    """k speaker groups with utterance counts as equal as a greedy assignment makes them."""
    if k < 2:
        raise DataError(f"kfold-speaker needs k >= 2, got {k}")
    counts = manifest["speaker"].value_counts()
    speakers = _sorted(counts.index)
    if len(speakers) < k:
        raise DataError(f"kfold-speaker with k={k} needs at least {k} speakers, the manifest "
                        f"has {len(speakers)}")
    # seeded shuffle, then a stable sort by size: the seed only reorders equal-sized speakers
    order = np.random.default_rng(seed).permutation(len(speakers))
    shuffled = [speakers[i] for i in order]
    shuffled.sort(key=lambda s: -counts[s])
    groups: list[set[str]] = [set() for _ in range(k)]
    sizes = [0] * k
    for speaker in shuffled:
        # the smallest group; among equals the one with fewest speakers, then the first
        target = min(range(k), key=lambda g: (sizes[g], len(groups[g]), g))
        groups[target].add(speaker)
        sizes[target] += int(counts[speaker])
    return [(f"group-{i}", group) for i, group in enumerate(groups)]


def _explicit_groups(
    manifest: pd.DataFrame, test_groups: Sequence[Sequence[str]] | None
) -> list[tuple[str, set[str]]]:
    if not test_groups:
        raise DataError("protocol speaker-groups needs test_groups (one list of test speakers "
                        "per fold)")
    known = set(manifest["speaker"])
    units = []
    for index, group in enumerate(test_groups):
        group = {str(s) for s in group}
        unknown = sorted(group - known)
        if unknown or not group:
            raise DataError(f"test group {index} names speakers not in the manifest: "
                            f"{', '.join(unknown) or '(empty group)'}; speakers: "
                            f"{', '.join(_sorted(known))}")
        units.append((f"group-{index}", group))
    _need_two(units, "test groups", "speaker-groups")
    return units


def _speaker_fold(
    manifest: pd.DataFrame,
    index: int,
    name: str,
    protocol: str,
    test_speakers: set[str],
    val_speakers: int | float,
    seed: int,
) -> Fold:
    is_test = manifest["speaker"].isin(test_speakers)
    remaining = _sorted(manifest.loc[~is_test, "speaker"])
    if not remaining:
        raise DataError(f"fold {name}: no training speakers left")
    if isinstance(val_speakers, (int, np.integer)):
        wanted = int(val_speakers)
    else:
        wanted = max(1, round(val_speakers * len(remaining)))
    count = min(wanted, len(remaining) - 1)  # at least one speaker stays in training
    if count < wanted:
        logger.warning("fold %s: only %d training speakers, %d go to validation instead of %d",
                       name, len(remaining), count, wanted)
    rng = np.random.default_rng([seed, index])
    chosen = set(rng.choice(remaining, size=count, replace=False).tolist())
    is_val = manifest["speaker"].isin(chosen)
    test = manifest.loc[is_test]
    return Fold(
        index=index,
        name=name,
        protocol=protocol,
        train=tuple(sorted(manifest.loc[~is_test & ~is_val, "utt_id"])),
        val=tuple(sorted(manifest.loc[is_val, "utt_id"])),
        test=tuple(sorted(test["utt_id"])),
        test_speakers=tuple(_sorted(test["speaker"])),
        val_speakers=tuple(_sorted(chosen)),
        test_sessions=tuple(_sorted(test["session"])) if "session" in test else ("",),
    )


def _official_fold(manifest: pd.DataFrame, test_split: str) -> Fold:
    if "split" not in manifest.columns:
        raise DataError("protocol official needs a split column; this manifest has none "
                        "(only corpora with official partitions, e.g. msp-podcast, have one)")
    split = manifest["split"]
    parts = {"train": "Train", "val": "Development", "test": test_split}
    rows = {part: manifest.loc[split == value] for part, value in parts.items()}
    for part, value in parts.items():
        if rows[part].empty:
            raise DataError(f"protocol official: no utterances with split {value!r} (splits "
                            f"present: {', '.join(_sorted(split.astype(str))) or 'none'})")
    left_out = split[~split.isin(set(parts.values()))].replace("", "(none)").value_counts()
    if not left_out.empty:
        logger.info("folds: official protocol leaves out %s",
                    ", ".join(f"{n} {v}" for v, n in left_out.items()))

    def speakers(frame: pd.DataFrame) -> tuple[str, ...]:
        return tuple(_sorted(frame.loc[frame["speaker"] != UNKNOWN_SPEAKER, "speaker"]))

    test = rows["test"]
    return Fold(
        index=0,
        name="official",
        protocol="official",
        train=tuple(sorted(rows["train"]["utt_id"])),
        val=tuple(sorted(rows["val"]["utt_id"])),
        test=tuple(sorted(test["utt_id"])),
        test_speakers=speakers(test),
        val_speakers=speakers(rows["val"]),
        test_sessions=tuple(_sorted(test["session"])) if "session" in test else ("",),
    )


def _warn_missing_classes(manifest: pd.DataFrame, folds: Sequence[Fold]) -> None:
    classes = set(manifest["emotion"])
    emotion = dict(zip(manifest["utt_id"], manifest["emotion"], strict=True))
    for fold in folds:
        absent = classes - {emotion[u] for u in fold.train}
        if absent:
            logger.warning("fold %s: class(es) %s absent from training", fold.name,
                           ", ".join(sorted(absent)))


# --- tables and files --------------------------------------------------------------------------


def folds_to_frame(folds: Sequence[Fold]) -> pd.DataFrame:
    """One row per (fold, utterance): columns ``fold``, ``name``, ``part``, ``utt_id``.

    ``part`` is ``train``, ``val`` or ``test``.
    """
    rows = [(fold.index, fold.name, part, utt_id)
            for fold in folds for part in _PARTS for utt_id in getattr(fold, part)]
    return pd.DataFrame(rows, columns=["fold", "name", "part", "utt_id"])


def save_folds(
    folds: Sequence[Fold], path: str | Path, metadata: Mapping[str, object] | None = None
) -> Path:
    """Write folds as JSON, atomically (a temporary file in the same folder, then a rename).

    Parameters
    ----------
    folds
        Output of :func:`make_folds`.
    path
        Destination file; its folder is created if needed.
    metadata
        JSON-serializable extras stored beside the folds (corpus, seed, ...).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": FOLDS_FORMAT,
        "version": _FOLDS_VERSION,
        "metadata": dict(metadata or {}),
        "folds": [asdict(fold) for fold in folds],
    }
    text = json.dumps(document, indent=1) + "\n"
    write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))
    return path


def load_folds(path: str | Path, manifest: pd.DataFrame | None = None) -> list[Fold]:
    """Read folds written by :func:`save_folds`.

    Parameters
    ----------
    path
        A fold file.
    manifest
        If given, every utterance id of every fold must be in it.

    Raises
    ------
    DataError
        Missing or malformed file, another format or version, ids absent from ``manifest``.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: fold file does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON fold file ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FOLDS_FORMAT:
        raise DataError(f"{path}: not a fold file (format is not {FOLDS_FORMAT!r})")
    if document.get("version") != _FOLDS_VERSION:
        raise DataError(f"{path}: fold file version {document.get('version')!r} is not "
                        f"{_FOLDS_VERSION}")
    try:
        folds = [Fold(**{key: tuple(value) if isinstance(value, list) else value
                         for key, value in entry.items()})
                 for entry in document["folds"]]
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path}: malformed fold entry ({exc})") from None
    if manifest is not None:
        known = set(manifest["utt_id"])
        for fold in folds:
            _check_ids(fold, known, str(path))
    return folds


def _check_ids(fold: Fold, known: set[str], source: str) -> None:
    for part in _PARTS:
        absent = [u for u in getattr(fold, part) if u not in known]
        if absent:
            raise DataError(f"{source}: fold {fold.name} {part} has {len(absent)} utterance ids "
                            f"not in the manifest, e.g. {absent[0]!r}")
