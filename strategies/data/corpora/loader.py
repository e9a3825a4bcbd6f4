"""The one loader every corpus goes through: options, labels, classes, audio checks, validation."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .base import MANIFEST_COLUMNS, CorpusSpec, LoadOptions, audio_duration
from .registry import get_corpus

__all__ = ["load_manifest", "validate_manifest"]

logger = logging.getLogger(__name__)


def load_manifest(name: str, root: str | Path | None, **options: object) -> pd.DataFrame:
    """Read a corpus folder into a manifest, one row per utterance, sorted by ``utt_id``.

    Parameters
    ----------
    name
        A key of :data:`CORPORA` (``iemocap``, ``msp-improv``, ``msp-podcast``, ``ravdess``,
        ``crema-d``, ``emodb``, ``folder``, ``csv``).
    root
        The corpus root folder (for ``csv``: the CSV file, or a folder with ``manifest.csv``).
        For a generated corpus (``synthetic``) the folder it is written to on first use;
        None: its default folder.
    **options
        Fields of the corpus's options class (``CorpusSpec.options``): the common ones of
        :class:`LoadOptions` (``classes``, ``emotion_map``, ``on_bad_audio``,
        ``on_missing_audio``) and the corpus's own.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MANIFEST_COLUMNS` (+ ``split`` where the corpus has official splits);
        ``attrs["corpus"]`` holds the corpus name.

    Raises
    ------
    DataError
        Unknown corpus or option, missing root, a layout that does not match, unknown label
        codes, missing or unreadable audio (unless skipped by option), no utterance left.
    """
    spec = get_corpus(name)
    load_options = _load_options(spec, options)
    if spec.generate is not None:
        root = spec.generate(None if root is None else Path(root).expanduser().resolve(), load_options)
    if root is None:
        raise DataError(f"corpus {spec.name} needs a root folder")
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise DataError(f"{root}: {spec.name} corpus root does not exist")
    if not spec.root_may_be_file and not root.is_dir():
        raise DataError(f"{root}: {spec.name} corpus root is not a folder")
    raw = spec.scan(root, load_options)
    if raw.empty:
        raise DataError(f"{root}: no {spec.name} utterances found (expected {spec.layout})")
    raw = _assign_emotions(spec, raw, load_options)
    raw = _check_audio(spec, raw, load_options)
    columns = list(MANIFEST_COLUMNS) + (["split"] if "split" in raw.columns else [])
    manifest = raw[columns].sort_values("utt_id", kind="stable").reset_index(drop=True)
    validate_manifest(manifest, source=str(root))
    manifest.attrs["corpus"] = spec.name
    counts = manifest["emotion"].value_counts().sort_index()
    logger.info("%s: %d utterances, %d speakers (%s)", spec.name, len(manifest),
                manifest["speaker"].nunique(),
                ", ".join(f"{k} {v}" for k, v in counts.items()))
    return manifest


def _load_options(spec: CorpusSpec, options: Mapping[str, object]) -> LoadOptions:
    allowed = {f.name for f in fields(spec.options)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise DataError(f"option(s) {', '.join(unknown)} do not apply to corpus {spec.name}; "
                        f"its options: {', '.join(sorted(allowed))}")
    try:
        return spec.options(**options)  # type: ignore[arg-type]
    except TypeError as exc:
        raise DataError(f"bad option for corpus {spec.name}: {exc}") from None


def _assign_emotions(spec: CorpusSpec, raw: pd.DataFrame, options: LoadOptions) -> pd.DataFrame:
    """Map raw labels to classes and keep the requested classes, logging what is dropped."""
    mapping = options.label_map(spec.emotion_map)
    mapping.update({str(k): str(v).lower() for k, v in (options.emotion_map or {}).items()})
    labels = raw["label"].astype(str).str.strip()
    if spec.unknown_labels == "keep":
        # free-text labels: known spellings are normalised, the rest kept as lowercase names
        mapping = {key.lower(): value for key, value in mapping.items()}
        lowered = labels.str.lower()
        emotion = lowered.map(lambda v: mapping.get(v, v))
        ignored = lowered == ""
        if ignored.any():
            first = raw.loc[ignored].iloc[0]
            raise DataError(f"{first['source']}: empty emotion label for {first['utt_id']}")
    else:
        ignored = labels.isin(spec.ignored_labels)
        unknown = ~ignored & ~labels.isin(mapping)
        if unknown.any() and spec.unknown_labels == "error":
            first = raw.loc[unknown].iloc[0]
            raise DataError(
                f"{first['source']}: unknown emotion label {first['label']!r} for "
                f"{first['utt_id']} (known: {', '.join(sorted(mapping))}; map it with "
                "option emotion_map)"
            )
        ignored |= unknown
        emotion = labels.map(mapping)
    available = set(emotion[~ignored])
    classes = options.classes or spec.default_classes or tuple(sorted(available))
    unknown_classes = [c for c in classes if c not in available | set(mapping.values())]
    if unknown_classes:
        raise DataError(f"class(es) {', '.join(unknown_classes)} do not exist in {spec.name}; "
                        f"its classes: {', '.join(sorted(available | set(mapping.values())))}")
    keep = ~ignored & emotion.isin(classes)
    dropped = Counter(labels[~keep])
    if dropped:
        logger.info("%s: skipped %d utterances whose labels are outside the classes %s: %s",
                    spec.name, sum(dropped.values()), ",".join(classes),
                    ", ".join(f"{k or '(none)'} {v}" for k, v in sorted(dropped.items())))
    result = raw.loc[keep].copy()
    result["emotion"] = emotion[keep]
    if result.empty:
        raise DataError(f"{spec.name}: no utterances left with classes {', '.join(classes)}")
    return result


def _check_audio(spec: CorpusSpec, raw: pd.DataFrame, options: LoadOptions) -> pd.DataFrame:
    """Drop or reject missing and unreadable audio; add the ``duration`` column."""
    durations: list[float] = []
    missing: list[str] = []
    bad: list[str] = []
    for utt_id, path, source in zip(raw["utt_id"], raw["path"], raw["source"], strict=True):
        if not Path(path).is_file():
            if options.on_missing_audio == "error":
                raise DataError(f"{path}: audio file missing for labelled utterance {utt_id} "
                                f"(from {source}; option on_missing_audio='skip' skips it)")
            missing.append(path)
            durations.append(float("nan"))
            continue
        try:
            durations.append(audio_duration(path))
        except DataError as exc:
            if options.on_bad_audio == "error":
                raise DataError(f"{exc} (option on_bad_audio='skip' skips it)") from None
            bad.append(str(exc))
            durations.append(float("nan"))
    if missing:
        logger.warning("%s: skipped %d utterances whose audio is missing, e.g. %s",
                       spec.name, len(missing), missing[0])
    if bad:
        logger.warning("%s: skipped %d unreadable audio files, e.g. %s",
                       spec.name, len(bad), bad[0])
    result = raw.assign(duration=durations)
    result = result.loc[result["duration"].notna()]
    if result.empty:
        raise DataError(f"{spec.name}: no utterance has readable audio")
    return result


def validate_manifest(manifest: pd.DataFrame, source: str = "manifest") -> None:
    """Check a manifest's columns, types and id uniqueness.

    Parameters
    ----------
    manifest
        A frame as returned by :func:`load_manifest` (or read back from disk).
    source
        What to name in error messages (a file or folder).

    Raises
    ------
    DataError
        Missing columns, duplicate ``utt_id`` values, genders other than F/M/"", or
        non-positive durations.
    """
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(f"{source}: manifest lacks column(s) {', '.join(missing)}")
    duplicated = manifest["utt_id"][manifest["utt_id"].duplicated()]
    if not duplicated.empty:
        raise DataError(f"{source}: utterance id {duplicated.iloc[0]!r} appears more than once")
    bad_gender = set(manifest["gender"]) - {"F", "M", ""}
    if bad_gender:
        raise DataError(f"{source}: gender values {sorted(bad_gender)} (expected F, M or '')")
    if not (pd.to_numeric(manifest["duration"], errors="coerce") > 0).all():
        raise DataError(f"{source}: manifest has missing or non-positive durations")
