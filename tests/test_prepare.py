"""``strategies.data.prepare``: one idempotent prepare per corpus, shared by processes preparing it at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np


def _prepare_in_child(data_dir: str, root: str, queue: "multiprocessing.Queue") -> None:
    from strategies.data.config import DataConfig
    from strategies.data.prepare import prepare_data

    try:
        prepared = prepare_data(DataConfig(root=root), data_dir, progress=False)
        queue.put(("ok", str(prepared.folder), np.asarray(prepared.features()).tolist(),
                   prepared.manifest["utt_id"].tolist()))
    except BaseException as error:  # reported to the parent, which fails the test
        queue.put(("error", repr(error), None, None))


def test_two_processes_prepare_the_same_corpus_at_once(tmp_path: Path) -> None:
    from strategies.data.config import DataConfig
    from strategies.data.prepare import _load_prepared

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    data_dir, root = str(tmp_path / "data"), str(tmp_path / "corpus")
    children = [context.Process(target=_prepare_in_child, args=(data_dir, root, queue)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=600) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert [r[0] for r in results] == ["ok", "ok"], results
    assert results[0][1] == results[1][1]  # the same folder
    assert results[0][2] == results[1][2] and results[0][3] == results[1][3]  # identical features, rows
    folders = sorted((tmp_path / "data" / "prepared").iterdir())
    # one prepared folder; no temporaries, and no lock file, left behind
    assert [p.name for p in folders if not p.name.startswith(".")] == [Path(results[0][1]).name]
    assert [p.name for p in folders if p.name.startswith(".")] == []
    folder = Path(results[0][1])
    assert sorted(p.name for p in folder.iterdir()) == ["features.npy", "folds.json", "manifest.csv",
                                                        "prepared.json"]
    prepared = _load_prepared(folder, DataConfig(root=root))
    assert np.array_equal(np.asarray(prepared.features()), np.asarray(results[0][2], dtype=np.float32))
