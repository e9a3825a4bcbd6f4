"""Corpus loaders on miniature copies of each corpus, on real EmoDB speech, and on bad input."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import miniature
import pandas as pd
import pytest
import soundfile as sf

from strategies.data.corpora import (
    CORPORA,
    MANIFEST_COLUMNS,
    UNKNOWN_SPEAKER,
    LoadOptions,
    audio_duration,
    get_corpus,
    load_manifest,
)
from strategies.data.errors import DataError
from strategies.data.folds import PROTOCOLS

EMODB_DEV = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "emodb-dev"


def _load(mini: miniature.Miniature, **options: object) -> pd.DataFrame:
    return load_manifest(mini.name, mini.root, **{**mini.options, **options})


@pytest.fixture(scope="module", params=sorted(miniature.MAKERS))
def mini(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> miniature.Miniature:
    """Each miniature corpus, built once for the tests that only read it."""
    return miniature.make_corpus(request.param, tmp_path_factory.mktemp(request.param))


# --- registry ----------------------------------------------------------------------------------


def test_every_corpus_has_a_miniature_and_a_known_protocol() -> None:
    assert set(CORPORA) == set(miniature.MAKERS)
    for spec in CORPORA.values():
        assert spec.protocol in PROTOCOLS
        assert (spec.k is not None) == (spec.protocol == "kfold-speaker")
        assert spec.url and spec.layout and spec.description


def test_unknown_corpus_lists_the_available_ones() -> None:
    with pytest.raises(DataError, match="unknown corpus 'timit'.*iemocap.*emodb"):
        get_corpus("timit")
    assert get_corpus("MSP_Podcast").name == "msp-podcast"


# --- every corpus on its miniature ---------------------------------------------------------------


def test_miniature_loads_with_expected_counts_speakers_and_sessions(
    mini: miniature.Miniature,
) -> None:
    manifest = _load(mini)
    spec = CORPORA[mini.name]
    extra = ["split"] if mini.name == "msp-podcast" else []
    assert list(manifest.columns) == list(MANIFEST_COLUMNS) + extra
    assert dict(Counter(manifest["emotion"])) == mini.counts
    assert dict(zip(manifest["speaker"], manifest["gender"], strict=True)) == mini.speakers
    assert tuple(sorted(set(manifest["session"]))) == mini.sessions
    assert manifest["utt_id"].is_unique
    assert list(manifest["utt_id"]) == sorted(manifest["utt_id"])
    assert manifest.attrs["corpus"] == spec.name
    for column in ("utt_id", "path", "speaker", "gender", "session", "emotion"):
        assert all(isinstance(v, str) for v in manifest[column]), column
    assert manifest["duration"].dtype == float


def test_paths_are_absolute_and_durations_come_from_the_header(
    mini: miniature.Miniature,
) -> None:
    manifest = _load(mini)
    for path, duration in zip(manifest["path"], manifest["duration"], strict=True):
        assert Path(path).is_absolute() and Path(path).is_file()
        info = sf.info(path)
        assert duration == pytest.approx(info.frames / info.samplerate)
    assert manifest["duration"].between(*mini.extra.get("durations", (0.1, 0.3))).all()


def test_loading_is_deterministic(mini: miniature.Miniature) -> None:
    pd.testing.assert_frame_equal(_load(mini), _load(mini))


def test_empty_folder_is_a_layout_error(tmp_path: Path) -> None:
    for name in CORPORA:
        if CORPORA[name].generate is not None:
            continue   # the synthetic corpus is written into an empty folder (tests/test_synthetic.py)
        root = tmp_path / name
        root.mkdir()
        with pytest.raises(DataError, match=str(root)):
            load_manifest(name, root)


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_manifest("emodb", tmp_path / "nowhere")


def test_file_given_as_corpus_root_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        load_manifest("iemocap", tmp_path / "x.txt")


def test_option_of_another_corpus_is_rejected(tmp_path: Path) -> None:
    mini = miniature.make_corpus("emodb", tmp_path)
    with pytest.raises(DataError, match="improvised_only do not apply to corpus emodb"):
        load_manifest("emodb", mini.root, improvised_only=True)
    with pytest.raises(DataError, match="on_bad_audio='ignore' is not one of"):
        load_manifest("emodb", mini.root, on_bad_audio="ignore")


def test_unknown_class_is_rejected(tmp_path: Path) -> None:
    mini = miniature.make_corpus("emodb", tmp_path)
    with pytest.raises(DataError, match="class\\(es\\) joy do not exist in emodb"):
        load_manifest("emodb", mini.root, classes=("ang", "joy"))


def test_classes_option_restricts_and_accepts_a_comma_string(tmp_path: Path) -> None:
    mini = miniature.make_corpus("emodb", tmp_path)
    manifest = load_manifest("emodb", mini.root, classes="ang,neu")
    assert dict(Counter(manifest["emotion"])) == {"ang": 12, "neu": 12}


# --- bad audio ---------------------------------------------------------------------------------


def test_text_file_named_wav_is_rejected_naming_it_or_skipped(tmp_path: Path) -> None:
    mini = miniature.make_corpus("emodb", tmp_path)
    bad = mini.root / "wav" / "03a01Wa.wav"
    bad.write_text("this is not audio\n")
    with pytest.raises(DataError, match=f"{bad}: unreadable audio"):
        load_manifest("emodb", mini.root)
    manifest = load_manifest("emodb", mini.root, on_bad_audio="skip")
    assert len(manifest) == mini.total - 1
    assert "03a01Wa" not in set(manifest["utt_id"])


def test_truncated_wav_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    miniature.write_wav(path, 5)
    path.write_bytes(path.read_bytes()[:60])  # the header promises more than the file holds
    with pytest.raises(DataError, match="truncated WAV"):
        audio_duration(path)


def test_header_only_wav_is_rejected_and_good_wav_measured(tmp_path: Path) -> None:
    path = tmp_path / "ok.wav"
    duration = miniature.write_wav(path, 3)
    assert audio_duration(path) == pytest.approx(duration)
    path.write_bytes(path.read_bytes()[:44])
    with pytest.raises(DataError, match="no samples"):
        audio_duration(path)


# --- IEMOCAP -----------------------------------------------------------------------------------


@pytest.fixture
def iemocap(tmp_path: Path) -> miniature.Miniature:
    return miniature.make_iemocap(tmp_path / "IEMOCAP_full_release")


def test_iemocap_speaker_is_session_plus_last_token_gender(iemocap: miniature.Miniature) -> None:
    manifest = load_manifest("iemocap", iemocap.root).set_index("utt_id")
    utt_id, speaker, gender, session, emotion = iemocap.extra["example"]
    row = manifest.loc[utt_id]
    assert (row["speaker"], row["gender"], row["session"], row["emotion"]) == (
        speaker, gender, session, emotion)
    assert row["path"].endswith(f"Session1/sentences/wav/Ses01F_impro01/{utt_id}.wav")
    # a male turn in a dialog named after the female actor
    assert manifest.loc["Ses01F_impro01_M001", "speaker"] == "1M"


def test_iemocap_options(iemocap: miniature.Miniature) -> None:
    def counts(**options: object) -> dict[str, int]:
        return dict(Counter(load_manifest("iemocap", iemocap.root, **options)["emotion"]))

    assert counts(improvised_only=True) == iemocap.extra["counts_improvised"]
    assert counts(scripted_only=True) == iemocap.extra["counts_scripted"]
    assert counts(improvised_only=True, merge_excited=False) == iemocap.extra["counts_authors"]
    assert counts(merge_excited=False, classes=("neu", "hap", "ang", "sad", "exc")) == {
        "neu": 15, "hap": 10, "ang": 10, "sad": 10, "exc": 10}
    # emotion_map overrides one entry of the corpus mapping
    assert counts(emotion_map={"fru": "ang"})["ang"] == 15
    with pytest.raises(DataError, match="exclude each other"):
        counts(improvised_only=True, scripted_only=True)


def test_iemocap_logs_skipped_labels(iemocap: miniature.Miniature,
                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="strategies.data.corpora"):
        load_manifest("iemocap", iemocap.root)
    assert "fru 5, sur 5, xxx 5" in caplog.text


def test_iemocap_missing_wav_is_an_error_or_skipped(iemocap: miniature.Miniature) -> None:
    wav = (iemocap.root / "Session2" / "sentences" / "wav" / "Ses02F_impro01"
           / "Ses02F_impro01_F000.wav")
    wav.unlink()
    with pytest.raises(DataError, match=f"{wav}: audio file missing"):
        load_manifest("iemocap", iemocap.root)
    manifest = load_manifest("iemocap", iemocap.root, on_missing_audio="skip")
    assert len(manifest) == iemocap.total - 1


def test_iemocap_unlabelled_xxx_wav_missing_is_fine(iemocap: miniature.Miniature) -> None:
    # audio of a turn outside the classes is never opened
    (iemocap.root / "Session1" / "sentences" / "wav" / "Ses01F_impro01"
     / "Ses01F_impro01_F003.wav").unlink()  # the xxx turn
    assert len(load_manifest("iemocap", iemocap.root)) == iemocap.total


def test_iemocap_unknown_label_is_an_error(iemocap: miniature.Miniature) -> None:
    label_file = iemocap.root / "Session3" / "dialog" / "EmoEvaluation" / "Ses03F_impro01.txt"
    label_file.write_text(label_file.read_text().replace("\tang\t", "\tgrr\t"))
    with pytest.raises(DataError, match=f"{label_file}: unknown emotion label 'grr'"):
        load_manifest("iemocap", iemocap.root)


def test_iemocap_session_without_label_files(iemocap: miniature.Miniature) -> None:
    shutil.rmtree(iemocap.root / "Session4" / "dialog" / "EmoEvaluation")
    with pytest.raises(DataError, match="Session4/dialog/EmoEvaluation: no IEMOCAP label"):
        load_manifest("iemocap", iemocap.root)


# --- MSP-IMPROV --------------------------------------------------------------------------------


def test_msp_improv_reads_either_label_file_name(tmp_path: Path) -> None:
    mini = miniature.make_msp_improv(tmp_path, label_file="Evaluation.txt")
    manifest = load_manifest("msp-improv", mini.root)
    assert dict(Counter(manifest["emotion"])) == mini.counts
    row = manifest.set_index("utt_id").loc["MSP-IMPROV-S01H-M02-T-MF01"]
    assert (row["speaker"], row["gender"], row["session"]) == ("M02", "M", "2")


def test_msp_improv_target_labels_and_recording_filter(tmp_path: Path) -> None:
    mini = miniature.make_msp_improv(tmp_path)
    target = load_manifest("msp-improv", mini.root, label_source="target")
    assert dict(Counter(target["emotion"])) == mini.extra["counts_target"]
    assert len(target) == mini.extra["files"]  # every file has a target emotion
    read = load_manifest("msp-improv", mini.root, recordings=("R",))
    assert dict(Counter(read["emotion"])) == mini.extra["counts_read"]
    assert read["utt_id"].str.contains("-R-").all()


def test_msp_improv_without_label_file(tmp_path: Path) -> None:
    mini = miniature.make_msp_improv(tmp_path)
    (mini.root / "Evalution.txt").unlink()
    with pytest.raises(DataError, match="Evaluation.txt or Evalution.txt"):
        load_manifest("msp-improv", mini.root)
    # the target label needs no label file
    assert len(load_manifest("msp-improv", mini.root, label_source="target")) == 96


# --- MSP-Podcast -------------------------------------------------------------------------------


def test_msp_podcast_split_and_unknown_speakers(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    mini = miniature.make_msp_podcast(tmp_path)
    with caplog.at_level(logging.WARNING):
        manifest = load_manifest("msp-podcast", mini.root)
    assert dict(Counter(manifest["split"])) == mini.extra["splits"]
    unknown = manifest["speaker"] == UNKNOWN_SPEAKER
    assert unknown.sum() == mini.extra["unknown_speaker_rows"] > 0
    assert (manifest.loc[unknown, "gender"] == "").all()
    assert "unknown speaker" in caplog.text and "no Split_Set" in caplog.text
    assert (manifest["session"] == "").all()


def test_msp_podcast_other_classes_by_option(tmp_path: Path) -> None:
    mini = miniature.make_msp_podcast(tmp_path)
    manifest = load_manifest("msp-podcast", mini.root, classes=("neu", "con", "dis"))
    assert set(manifest["emotion"]) == {"neu", "con", "dis"}


# --- RAVDESS -----------------------------------------------------------------------------------


def test_ravdess_song_channel_and_other_modalities(tmp_path: Path) -> None:
    mini = miniature.make_ravdess(tmp_path)
    both = load_manifest("ravdess", mini.root, vocal_channels=("speech", "song"))
    assert dict(Counter(both["emotion"])) == mini.extra["counts_with_song"]
    miniature.write_wav(mini.root / "Actor_01" / "01-01-05-01-01-01-01.wav", 1)  # video+audio
    assert len(load_manifest("ravdess", mini.root)) == mini.total
    (mini.root / "Actor_02" / "03-01-05-01-01-01.wav").write_bytes(b"")
    with pytest.raises(DataError, match="not a RAVDESS file name"):
        load_manifest("ravdess", mini.root)


# --- CREMA-D -----------------------------------------------------------------------------------


def test_crema_d_broken_file_needs_the_skip_option(tmp_path: Path) -> None:
    mini = miniature.make_crema_d(tmp_path)
    with pytest.raises(DataError, match="1076_MTI_SAD_XX.wav: audio file holds no samples"):
        load_manifest("crema-d", mini.root)
    assert len(load_manifest("crema-d", mini.root, on_bad_audio="skip")) == mini.total


def test_crema_d_without_demographics_has_no_gender(tmp_path: Path) -> None:
    mini = miniature.make_crema_d(tmp_path, broken=False)
    (mini.root / "VideoDemographics.csv").unlink()
    manifest = load_manifest("crema-d", mini.root)
    assert (manifest["gender"] == "").all() and len(manifest) == mini.total


# --- EmoDB -------------------------------------------------------------------------------------


def test_emodb_unknown_emotion_letter_is_an_error(tmp_path: Path) -> None:
    mini = miniature.make_emodb(tmp_path)
    bad = mini.root / "wav" / "03a01Xa.wav"
    miniature.write_wav(bad, 1)
    with pytest.raises(DataError, match=f"{bad}: unknown emotion label 'X'"):
        load_manifest("emodb", mini.root)


@pytest.mark.skipif(not EMODB_DEV.is_dir(), reason=f"real EmoDB subset absent at {EMODB_DEV}")
def test_emodb_dev_real_subset() -> None:
    manifest = load_manifest("emodb", EMODB_DEV)
    assert len(manifest) == 304
    assert dict(Counter(manifest["emotion"])) == {
        "ang": 72, "bor": 45, "dis": 20, "fea": 36, "hap": 44, "sad": 35, "neu": 52}
    assert dict(Counter(manifest["speaker"])) == {
        "03": 49, "08": 58, "09": 43, "10": 38, "11": 55, "13": 61}
    genders = manifest.groupby("speaker")["gender"].agg(set).to_dict()
    assert genders == {"03": {"M"}, "08": {"F"}, "09": {"F"}, "10": {"M"}, "11": {"M"},
                       "13": {"F"}}
    assert manifest["duration"].eq(2.0).all()  # this copy is cropped/padded to 2 s


# --- generic folder and CSV --------------------------------------------------------------------


def test_folder_speaker_from_level_or_nothing(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    mini = miniature.make_folder(tmp_path)
    by_level = load_manifest("folder", mini.root, speaker_level=0)
    assert set(by_level["speaker"]) == set(mini.speakers)
    with caplog.at_level(logging.WARNING):
        anonymous = load_manifest("folder", mini.root)
    assert set(anonymous["speaker"]) == {UNKNOWN_SPEAKER}
    assert "speaker-independent folds cannot be made" in caplog.text
    with pytest.raises(DataError, match="no folder at speaker_level=1"):
        load_manifest("folder", mini.root, speaker_level=1)
    with pytest.raises(DataError, match="named group"):
        load_manifest("folder", mini.root, speaker_pattern=r"spk\d")


def test_folder_pattern_with_gender_group(tmp_path: Path) -> None:
    root = tmp_path / "c"
    for index, (emotion, name) in enumerate([("joy", "a_F_1"), ("anger", "b_M_2")]):
        miniature.write_wav(root / emotion / f"{name}.wav", index)
    manifest = load_manifest("folder", root,
                             speaker_pattern=r"^(?P<speaker>[a-z])_(?P<gender>[FM])")
    assert list(manifest["emotion"]) == ["ang", "hap"]  # synonyms normalised
    assert list(manifest["gender"]) == ["M", "F"]


def test_csv_relative_paths_column_rename_and_missing_columns(tmp_path: Path) -> None:
    mini = miniature.make_csv(tmp_path)
    manifest = load_manifest("csv", mini.root.parent)  # a folder holding manifest.csv
    assert manifest["utt_id"].str.startswith("audio/").all()
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(mini.root.read_text().replace("path,emotion", "file,label", 1))
    assert len(load_manifest("csv", renamed, columns={"file": "path", "label": "emotion"})) == 16
    with pytest.raises(DataError, match="missing column\\(s\\) emotion, path"):
        load_manifest("csv", renamed)


def test_load_options_are_frozen() -> None:
    options = LoadOptions(classes=["ang"])
    assert options.classes == ("ang",)
    with pytest.raises(AttributeError):
        options.classes = ("neu",)  # type: ignore[misc]


def test_the_docs_corpus_example_plugs_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/datasets.md, "Adding a corpus": the example module, as written there, registered
    and loaded from a miniature TESS layout through the one loader."""
    import importlib.util
    import re
    import sys

    import numpy as np

    from strategies.data import corpora

    docs = (Path(__file__).resolve().parents[1] / "docs" / "datasets.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- corpus-example:start -->\s*```python\n(.*?)```\s*<!-- corpus-example:end -->", docs, re.S)
    assert match, "example block not found in docs/datasets.md"
    name = "strategies.data.corpora._docs_tess"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    module.__package__ = "strategies.data.corpora"
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(match.group(1), "docs/datasets.md", "exec"), module.__dict__)
    monkeypatch.setitem(corpora.CORPORA, "tess", module.SPEC)

    for speaker, word, emotion in [("OAF", "back", "angry"), ("OAF", "dog", "neutral"),
                                   ("YAF", "back", "ps"), ("YAF", "dog", "angry")]:
        folder = tmp_path / f"{speaker}_{emotion}"
        folder.mkdir(exist_ok=True)
        sf.write(folder / f"{speaker}_{word}_{emotion}.wav", np.zeros(1600, dtype=np.float32), 16000)
    manifest = load_manifest("tess", tmp_path)
    assert list(manifest["emotion"]) == ["ang", "neu", "sur", "ang"]  # sorted by utt_id
    assert list(manifest["speaker"]) == ["OAF", "OAF", "YAF", "YAF"]
    assert manifest["duration"].tolist() == [0.1] * 4
    assert list(load_manifest("tess", tmp_path, words=("back",))["utt_id"]) == ["OAF_back_angry", "YAF_back_ps"]
    with pytest.raises(DataError, match="do not apply to corpus tess; its options: .*words"):
        load_manifest("tess", tmp_path, improvised_only=True)
