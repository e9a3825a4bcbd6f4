"""Fabricate miniature copies of each supported corpus, in the real layout, for tests.

Each ``make_<corpus>(root)`` writes a tiny tree (0.1-0.3 s tone+noise WAVs at 16 kHz) that
reproduces the corpus's real folder layout, file names and label files, including the awkward
content real copies have (IEMOCAP header, annotator and blank lines, ``xxx``/``fru`` labels and
macOS ``._`` files; MSP-IMPROV rater lines and its misspelt ``Evalution.txt``; MSP-Podcast
``Unknown`` speakers and rows without a split; the empty CREMA-D file; EmoDB's side folders).
It returns a :class:`Miniature` with what loading it must give. The expectations are written
out from the label tables below, independently of the loader's code.

``make_corpus(name, root)`` dispatches by corpus name; import this file as a plain module
(``import miniature``) from any test.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["SAMPLE_RATE", "Miniature", "MAKERS", "make_corpus", "make_msp_improv_sessions", "write_wav"]

#: Sample rate of every fabricated file, in Hz.
SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Miniature:
    """What a fabricated corpus must load as."""

    # corpus name in strategies.data.corpora.CORPORA
    name: str
    # root folder to pass to load_manifest (for csv: the CSV file)
    root: Path
    # utterances per class when loaded with ``options``
    counts: dict[str, int]
    # speaker -> gender ("F", "M" or "") of the loaded utterances
    speakers: dict[str, str]
    # sessions of the loaded utterances ("" where the corpus has none)
    sessions: tuple[str, ...]
    # options load_manifest needs for this tree (e.g. skipping the broken CREMA-D file)
    options: dict[str, object] = field(default_factory=dict)
    # corpus-specific expectations (counts under other options, file names, ...)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Number of utterances loaded with ``options``."""
        return sum(self.counts.values())


def write_wav(path: Path, index: int, sample_rate: int = SAMPLE_RATE) -> float:
    """Write a short deterministic tone + noise WAV (0.1 to 0.3 s) and return its duration."""
    frames = sample_rate // 10 + (index % 11) * sample_rate // 50
    rng = np.random.default_rng(index)
    t = np.arange(frames) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * (150 + 10 * (index % 17)) * t) + 0.01 * rng.standard_normal(
        frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype(np.float32), sample_rate, subtype="PCM_16")
    return frames / sample_rate


def _broken_wav(path: Path) -> None:
    """A 44-byte WAV: a header and no samples, like CREMA-D's 1076_MTI_SAD_XX.wav."""
    write_wav(path, 0)
    path.write_bytes(path.read_bytes()[:44])


# --- IEMOCAP -----------------------------------------------------------------------------------

# (speaker gender letter of the turn, label) per dialog; the same in every session.
_IEMOCAP_IMPRO = [("F", "neu"), ("M", "hap"), ("F", "ang"), ("M", "sad"), ("F", "exc"),
                  ("M", "fru"), ("F", "xxx"), ("M", "neu")]
_IEMOCAP_SCRIPT = [("F", "sad"), ("M", "ang"), ("F", "hap"), ("M", "neu"), ("F", "sur"),
                   ("M", "exc")]
_IEMOCAP_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def make_iemocap(root: Path) -> Miniature:
    """Five sessions, one improvised and one scripted dialog each (14 turns per session)."""
    index = 0
    for session in range(1, 6):
        base = root / f"Session{session}"
        evaluation = base / "dialog" / "EmoEvaluation"
        (evaluation / "Categorical").mkdir(parents=True)
        for dialog, turns in ((f"Ses0{session}F_impro01", _IEMOCAP_IMPRO),
                              (f"Ses0{session}M_script01_1", _IEMOCAP_SCRIPT)):
            lines = [_IEMOCAP_HEADER]
            numbers = Counter()
            for position, (gender, label) in enumerate(turns):
                utt_id = f"{dialog}_{gender}{numbers[gender]:03d}"
                numbers[gender] += 1
                start = 2.5 + 3.1 * position
                lines.append(
                    f"[{start:.4f} - {start + 1.9:.4f}]\t{utt_id}\t{label}\t"
                    "[2.5000, 3.0000, 2.5000]\n"
                    "C-E2:\tNeutral;\t()\n"
                    "C-E3:\tFrustration; Anger;\t(irritated)\n"
                    "C-F1:\tNeutral;\t()\n"
                    "A-E3:\tval 3; act 2; dom  2;\t()\n"
                    "A-F1:\tval 2; act 3; dom  3;\t(mildly aggravated, attitude)\n\n"
                )
                write_wav(base / "sentences" / "wav" / dialog / f"{utt_id}.wav", index)
                index += 1
            (evaluation / f"{dialog}.txt").write_text("".join(lines))
            # categorical per-annotator files and macOS resource forks sit beside the labels
            (evaluation / "Categorical" / f"{dialog}_e2_cat.txt").write_text(
                f"{dialog}_F000 :Neutral state; ()\n")
            (evaluation / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07Mac OS X\x00\xff")
            write_wav(base / "dialog" / "wav" / f"{dialog}.wav", index)
    speakers = {f"{s}{g}": g for s in range(1, 6) for g in "FM"}
    per_session_default = Counter({"neu": 3, "hap": 4, "ang": 2, "sad": 2})
    return Miniature(
        name="iemocap", root=root,
        counts={k: 5 * v for k, v in per_session_default.items()},
        speakers=speakers, sessions=("1", "2", "3", "4", "5"),
        extra={
            # improvised_only=True
            "counts_improvised": {"neu": 10, "hap": 10, "ang": 5, "sad": 5},
            # improvised_only=True, merge_excited=False (the authors' protocol)
            "counts_authors": {"neu": 10, "hap": 5, "ang": 5, "sad": 5},
            # scripted_only=True
            "counts_scripted": {"neu": 5, "hap": 10, "ang": 5, "sad": 5},
            "example": ("Ses01F_impro01_M000", "1M", "M", "1", "hap"),
        },
    )


# --- MSP-IMPROV --------------------------------------------------------------------------------

_MSP_IMPROV_TARGETS = "AHSN"
_MSP_IMPROV_RECORDINGS = "RTSP"
_MSP_IMPROV_RATER = {"A": "Angry", "H": "Happy", "S": "Sad", "N": "Neutral",
                     "O": "Other", "X": "Neutral"}


def _msp_improv_consensus(target: str, position: int) -> str:
    """Consensus label of the position-th file: mostly the target, sometimes not."""
    return {3: "N", 4: "O", 7: "X"}.get(position % 9, target)


def make_msp_improv(root: Path, label_file: str = "Evalution.txt") -> Miniature:
    """Three sessions, two actors each, every target emotion in all four recording types."""
    return make_msp_improv_sessions(root, sessions=(1, 2, 3), label_file=label_file)


def make_msp_improv_sessions(root: Path, sessions: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
                             label_file: str = "Evaluation.txt") -> Miniature:
    """Any sessions (the real corpus has six), two actors each, every target emotion in all four
    recording types.

    ``extra["counts_authors"]`` holds the counts of the authors' protocol (``R`` recordings,
    target labels): one read sentence per actor and target emotion.
    """
    lines, index = [], 0
    counts, targets, reads, reads_target = Counter(), Counter(), Counter(), Counter()
    mapping = {"A": "ang", "H": "hap", "S": "sad", "N": "neu"}
    for session in sessions:
        for gender, other in (("F", "M"), ("M", "F")):
            for target in _MSP_IMPROV_TARGETS:
                for recording in _MSP_IMPROV_RECORDINGS:
                    key = f"S01{target}-{gender}{session:02d}-{recording}-{gender}{other}01"
                    write_wav(root / "Audio" / f"session{session}" / f"S01{target}" / recording
                              / f"MSP-IMPROV-{key}.wav", index)
                    label = _msp_improv_consensus(target, index)
                    lines.append(f"UTD-IMPROV-{key}.avi; {label}; A:3.000000; V:2.500000; "
                                 "D:3.000000 ; N:2.000000;\n")
                    for rater in ("UTD-J01", "UTD-J07"):
                        lines.append(f"{rater}; {_MSP_IMPROV_RATER[label]}; "
                                     f"{_MSP_IMPROV_RATER[label]},Other; A:3.000000; "
                                     "V:2.000000; D:3.000000; N:2.000000;\n")
                    lines.append("\n")
                    if label in mapping:
                        counts[mapping[label]] += 1
                        if recording == "R":
                            reads[mapping[label]] += 1
                    if recording == "R":
                        reads_target[mapping[target]] += 1
                    targets[mapping[target]] += 1
                    index += 1
    (root / label_file).write_text("".join(lines))
    if 1 in sessions:
        # a video file and a macOS resource fork beside the audio
        folder = root / "Audio" / "session1" / "S01A" / "R"
        (folder / "._MSP-IMPROV-S01A-F01-R-FM01.wav").write_bytes(b"\x00\x05\x16\x07")
        (folder / "MSP-IMPROV-S01A-F01-R-FM01.avi").write_bytes(b"RIFF")
    speakers = {f"{g}{s:02d}": g for s in sessions for g in "FM"}
    return Miniature(
        name="msp-improv", root=root, counts=dict(counts), speakers=speakers,
        sessions=tuple(str(s) for s in sessions),
        extra={
            "counts_target": dict(targets),  # label_source="target"
            "counts_read": dict(reads),  # recordings=("R",)
            "counts_authors": dict(reads_target),  # R recordings, target labels
            "files": index,
        },
    )


# --- MSP-Podcast -------------------------------------------------------------------------------

# (EmoClass, SpkrID, Gender, Split_Set) rows, cycled; "Unknown" speakers and empty splits are in
# the real labels_consensus.csv.
_PODCAST_CLASSES = "NHSANHSACOXDNHSA"
_PODCAST_SPLITS = ["Train", "Train", "Development", "Train", "Test1", "Train", "Test2", "Train", ""]


def make_msp_podcast(root: Path) -> Miniature:
    """80 speaking turns, 6 speakers + Unknown, Train/Development/Test1/Test2 and no split."""
    labels = root / "Labels"
    labels.mkdir(parents=True)
    mapping = {"N": "neu", "H": "hap", "S": "sad", "A": "ang"}
    counts, splits, unknown = Counter(), Counter(), 0
    speakers: dict[str, str] = {}
    with (labels / "labels_consensus.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID",
                         "Gender", "Split_Set"])
        for index in range(80):
            name = f"MSP-PODCAST_{index // 8 + 1:04d}_{index % 8 + 1:04d}.wav"
            emo = _PODCAST_CLASSES[index % len(_PODCAST_CLASSES)]
            if index % 7 == 6:
                speaker, gender = "Unknown", "Unknown"
            else:
                speaker = str(100 + (index // 3) % 6)
                gender = "Female" if (index // 3) % 6 < 3 else "Male"
            split = _PODCAST_SPLITS[index % len(_PODCAST_SPLITS)]
            writer.writerow([name, emo, "4.2", "3.8", "4.0", speaker, gender, split])
            write_wav(root / "Audios" / name, index)
            if emo in mapping:
                counts[mapping[emo]] += 1
                splits[split] += 1
                if speaker == "Unknown":
                    unknown += 1
                    speakers["unknown"] = ""
                else:
                    speakers[speaker] = gender[0]
    return Miniature(
        name="msp-podcast", root=root, counts=dict(counts), speakers=speakers, sessions=("",),
        extra={"splits": dict(splits), "unknown_speaker_rows": unknown},
    )


# --- RAVDESS -----------------------------------------------------------------------------------


def make_ravdess(root: Path) -> Miniature:
    """Six actors: 15 speech files each (neutral at normal intensity only), plus song files."""
    counts, index = Counter(), 0
    names = {"01": "neu", "02": "cal", "03": "hap", "04": "sad", "05": "ang", "06": "fea",
             "07": "dis", "08": "sur"}
    for actor in range(1, 7):
        folder = root / f"Actor_{actor:02d}"
        for emotion, name in names.items():
            for intensity in ("01",) if emotion == "01" else ("01", "02"):
                write_wav(folder / f"03-01-{emotion}-{intensity}-01-01-{actor:02d}.wav", index)
                counts[name] += 1
                index += 1
        # song (vocal channel 02) of the same actor
        write_wav(folder / f"03-02-03-01-01-01-{actor:02d}.wav", index)
        index += 1
    speakers = {f"{a:02d}": "M" if a % 2 else "F" for a in range(1, 7)}
    return Miniature(
        name="ravdess", root=root, counts=dict(counts), speakers=speakers, sessions=("",),
        extra={"song_files": 6, "counts_with_song": {**counts, "hap": counts["hap"] + 6}},
    )


# --- CREMA-D -----------------------------------------------------------------------------------


def make_crema_d(root: Path, broken: bool = True) -> Miniature:
    """Six actors x 12 clips, VideoDemographics.csv, and the empty 44-byte 1076_MTI_SAD_XX.wav."""
    audio = root / "AudioWAV"
    emotions = {"ANG": "ang", "DIS": "dis", "FEA": "fea", "HAP": "hap", "NEU": "neu",
                "SAD": "sad"}
    counts, index = Counter(), 0
    sexes = {1001: "Male", 1002: "Female", 1003: "Male", 1004: "Female", 1005: "Male",
             1006: "Female", 1076: "Female"}
    for actor in range(1001, 1007):
        for code, name in emotions.items():
            for sentence, level in (("DFA", "XX"), ("IEO", "XX" if code == "NEU" else "MD")):
                write_wav(audio / f"{actor}_{sentence}_{code}_{level}.wav", index)
                counts[name] += 1
                index += 1
    if broken:
        _broken_wav(audio / "1076_MTI_SAD_XX.wav")
    with (root / "VideoDemographics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
        for actor, sex in sexes.items():
            writer.writerow([actor, 30 + actor % 20, sex, "Caucasian", "Not Hispanic"])
    speakers = {str(a): sexes[a][0] for a in range(1001, 1007)}
    return Miniature(
        name="crema-d", root=root, counts=dict(counts), speakers=speakers, sessions=("",),
        options={"on_bad_audio": "skip"} if broken else {},
        extra={"broken_file": str(audio / "1076_MTI_SAD_XX.wav") if broken else None},
    )


# --- EmoDB -------------------------------------------------------------------------------------

_EMODB_SPEAKERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M"}


def make_emodb(root: Path) -> Miniature:
    """Six speakers x two texts x seven emotions, beside the release's side folders."""
    names = {"W": "ang", "L": "bor", "E": "dis", "A": "fea", "F": "hap", "T": "sad", "N": "neu"}
    counts, index = Counter(), 0
    for speaker in _EMODB_SPEAKERS:
        for text in ("a01", "b02"):
            for letter, name in names.items():
                stem = f"{speaker}{text}{letter}{'ab'[index % 2]}"
                write_wav(root / "wav" / f"{stem}.wav", index)
                (root / "lablaut").mkdir(parents=True, exist_ok=True)
                (root / "lablaut" / f"{stem}.lab").write_text("0.0 a\n")
                counts[name] += 1
                index += 1
    (root / "silb").mkdir()
    (root / "erkennung.txt").write_text("Erkennungsrate\n")
    return Miniature(
        name="emodb", root=root, counts=dict(counts), speakers=dict(_EMODB_SPEAKERS),
        sessions=("",),
    )


# --- generic folder and CSV --------------------------------------------------------------------


def make_folder(root: Path) -> Miniature:
    """<emotion>/<speaker>/<speaker>_<n>.wav for four emotions and four speakers."""
    counts, index = Counter(), 0
    names = {"angry": "ang", "happy": "hap", "neutral": "neu", "sad": "sad"}
    for folder, name in names.items():
        for speaker in ("spk1", "spk2", "spk3", "spk4"):
            for take in range(2):
                write_wav(root / folder / speaker / f"{speaker}_{take}.wav", index)
                counts[name] += 1
                index += 1
    (root / "angry" / "spk1" / "notes.txt").write_text("not audio\n")
    (root / "angry" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return Miniature(
        name="folder", root=root, counts=dict(counts),
        speakers={f"spk{i}": "" for i in range(1, 5)}, sessions=("",),
        options={"speaker_pattern": r"^(?P<speaker>spk\d+)_"},
    )


def make_csv(root: Path) -> Miniature:
    """manifest.csv with relative and absolute paths and free-text emotion names."""
    rows, counts = [], Counter()
    names = ["angry", "Neutral", "hap", "sad"]
    canonical = {"angry": "ang", "Neutral": "neu", "hap": "hap", "sad": "sad"}
    for index in range(16):
        speaker = f"s{index % 4}"
        relative = Path("audio") / speaker / f"utt{index:02d}.wav"
        write_wav(root / relative, index)
        path = str(root / relative) if index == 0 else relative.as_posix()
        emotion = names[index // 4]
        rows.append([path, emotion, speaker, "female" if index % 2 else "male"])
        counts[canonical[emotion]] += 1
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "emotion", "speaker", "gender"])
        writer.writerows(rows)
    # speaker index % 4 and gender index % 2 agree: s0/s2 male, s1/s3 female
    return Miniature(
        name="csv", root=root / "manifest.csv", counts=dict(counts),
        speakers={"s0": "M", "s1": "F", "s2": "M", "s3": "F"}, sessions=("",),
    )


def make_synthetic(root: Path) -> Miniature:
    """The synthetic corpus is made, not found: the generator writes 2 voices x 3 emotions x 1 clip
    into ``root`` when it is loaded with these options (spk1 is voice f1, spk2 voice m1)."""
    return Miniature(
        name="synthetic", root=root / "corpus", counts={"neu": 2, "ang": 2, "sad": 2},
        speakers={"spk1": "F", "spk2": "M"}, sessions=("",),
        options={"num_speakers": 2, "emotions": "neu,ang,sad", "clips_per_emotion": 1},
        extra={"durations": (0.3, 10.0)},   # spoken sentences, not the others' 0.1-0.3 s tones
    )


#: corpus name -> function fabricating it under a (new or empty) folder
MAKERS: dict[str, Callable[[Path], Miniature]] = {
    "synthetic": make_synthetic,
    "iemocap": make_iemocap,
    "msp-improv": make_msp_improv,
    "msp-podcast": make_msp_podcast,
    "ravdess": make_ravdess,
    "crema-d": make_crema_d,
    "emodb": make_emodb,
    "folder": make_folder,
    "csv": make_csv,
}


def make_corpus(name: str, root: str | Path) -> Miniature:
    """Fabricate the miniature of corpus ``name`` under ``root`` and return its expectations."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return MAKERS[name](root)
