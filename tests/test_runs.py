"""``strategies.runs``: run folders (their writer lock is tested in tests/test_lifeline.py)."""

from __future__ import annotations

from pathlib import Path


def test_run_folders_are_unique_under_concurrency(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from strategies.runs import new_run_dir

    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: new_run_dir(tmp_path, "search"), range(16)))
    assert len(set(folders)) == 16 and all(f.is_dir() for f in folders)
