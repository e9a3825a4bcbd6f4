"""One job of :func:`strategies.trials.run_jobs_as_trials`, run inside an NNI trial.

NNI's training service starts ``python -m strategies.compat -m strategies.trial_job JOBS_DIR``;
the trial asks the tuner for its job id (``nni.get_next_parameter()["job"]``), reads the
spec ``JOBS_DIR/<id>.json``, runs it and writes ``JOBS_DIR/<id>.result.json`` atomically: ``{"job", "trial_id",
"experiment_id", "result"}``.

Job kinds
---------
``search``
    A one-shot architecture search (:func:`strategies.search.run_search`, in this process)
    from plain values: the space, search and training configs as dicts, and each dataset as
    the arguments of :class:`~strategies.data.dataset.FeatureDataset`. Each validation epoch
    is reported to the NNI manager as an intermediate result and the epoch of the exported
    architecture (``genotype``: best or last validation UA) as the final result, in the
    shared evaluator's format (``default`` = UA, ``val_wa``, ``val_f1``, ``val_loss``). The
    result file holds the :class:`~strategies.search.SearchResult`.
``run``
    One (method, seed, fold) run of a comparison (``ser-nas compare --dispatch trials``): the
    run's config, fold, run folder and prepared-data folder; the search and retraining run
    in this trial and write the fold folder as ``compare --jobs`` does; the final result is
    the test fold's figures (``default`` = test UA).
``replay``
    A finished run folder (``fold_dir``), shown as a trial: its retraining's per-epoch
    validation figures as intermediate results and its recorded test figures as the final
    result (``ser-nas compare`` shows all its runs together in one experiment this way).

The job specs, the reporter that reaches the NNI manager and the running of jobs as trials
live in :mod:`strategies.trials`; this module is the entry point only, at the top of the
house (it runs searches and comparison runs), and nothing imports it.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .trials import JOB_FORMAT, TrialReporter, current_reporter, reporting

logger = logging.getLogger(__name__)

__all__ = ["run_job", "main"]


def _run_search(job: dict[str, Any]) -> dict[str, Any]:
    from ser_space import SpaceConfig

    from .data.dataset import FeatureDataset
    from .evaluator import TrainConfig
    from .search import SearchConfig, run_search

    datasets = {part: FeatureDataset(**args) for part, args in job["datasets"].items()}
    search = SearchConfig.from_dict(job["search"])
    result = run_search(SpaceConfig.from_dict(job["space"]), search,
                        TrainConfig.from_dict(job["train"]), datasets["train"], datasets["val"],
                        job["workdir"], num_classes=job.get("num_classes"), train_labels=job.get("train_labels"),
                        trainer_kwargs=job.get("trainer_kwargs") or None)
    reporter = current_reporter()
    if reporter is not None and result.history:
        final = max(result.history, key=lambda e: (_ua(e), -e["epoch"])) if search.genotype == "best" \
            else result.history[-1]
        reporter.final(final)
    return asdict(result)


def _ua(entry: dict[str, Any]) -> float:
    value = entry.get("val_ua")
    return float("-inf") if value is None or value != value else float(value)


def _run_replay(job: dict[str, Any]) -> dict[str, Any]:
    """Show a finished run (one fold folder) as this trial: its retraining curve, its test figures.

    Intermediate results are the retraining's per-epoch validation figures (``retrain.csv``,
    ``default`` = validation UA); the final result is the test fold's, as recorded in
    ``metrics.json`` (``default`` = test UA). Nothing is trained or evaluated again.
    """
    import pandas as pd

    from .runs import RunError, read_json

    folder = Path(job["fold_dir"])
    metrics = read_json(folder / "metrics.json")
    history_path = folder / "retrain.csv"
    if (folder / "reference.json").is_file():
        history = []  # a reference baseline (strategies.reference) has no training curve, only its figures
    elif not history_path.is_file():
        raise RunError(f"{history_path}: no such file")
    else:
        history = pd.read_csv(history_path).to_dict(orient="records")
    reporter = current_reporter()
    if reporter is not None:
        for sequence, entry in enumerate(history):
            metric = {"default": float(entry["val_ua"]), "val_wa": float(entry["val_wa"]),
                      "val_f1": float(entry["val_f1"]), "val_loss": float(entry["val_loss"])}
            if "train_loss" in entry and entry["train_loss"] == entry["train_loss"]:  # not NaN
                metric["train_loss"] = float(entry["train_loss"])
            reporter.send("PERIODICAL", metric, sequence)
        reporter.send("FINAL", _test_result(metrics), 0)
    return {"run": job.get("label", str(folder)), "test_ua": metrics["test_ua"], "epochs": len(history)}


def _test_result(metrics: dict[str, Any]) -> dict[str, float]:
    """A fold's recorded test figures (``metrics.json``) as an NNI final result (``default`` = test UA)."""
    return {"default": float(metrics["test_ua"]), "test_wa": float(metrics["test_wa"]),
            "test_f1": float(metrics["test_f1"]), "parameters": float(metrics["parameters"]),
            "search_seconds": float(metrics["search_seconds"])}


def _run_comparison_run(job: dict[str, Any]) -> dict[str, Any]:
    """One (method, seed, fold) run of a comparison, into its run folder (kind ``run``)."""
    from .compare import run_comparison_job
    from .runs import read_json
    from .threads import threads_for_run, use_threads

    use_threads(threads_for_run(None))  # the share the trial command gives ($SER_NAS_THREADS)
    outcome = run_comparison_job((job["config"], int(job["fold"]), job["run_dir"], job.get("data_dir"),
                                  job.get("trainer_kwargs")))
    if "error" in outcome:
        raise RuntimeError(f"{Path(job['run_dir']).name} fold {job['fold']}: {outcome['error']}")
    metrics = read_json(Path(job["run_dir"]) / f"fold-{job['fold']}" / "metrics.json")
    reporter = current_reporter()
    if reporter is not None:
        reporter.send("FINAL", _test_result(metrics), 0)
    return outcome


_KINDS = {"search": _run_search, "replay": _run_replay, "run": _run_comparison_run}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job spec in this process and return its result (plain values)."""
    if job.get("format", JOB_FORMAT) != JOB_FORMAT:
        raise ValueError(f"job {job.get('id')}: unsupported job format {job.get('format')!r}")
    kind = job.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"job {job.get('id')}: unknown kind {kind!r}; known: {', '.join(_KINDS)}")
    return _KINDS[kind](job)


def main(argv: list[str] | None = None) -> int:
    """Trial entry point: ``python -m strategies.compat -m strategies.trial_job JOBS_DIR``."""
    import nni

    from .runs import read_json, write_json

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m strategies.compat -m strategies.trial_job JOBS_DIR")
    jobs_dir = Path(argv[0])
    params = nni.get_next_parameter()
    if not params or "job" not in params:
        raise SystemExit(f"no job id from the NNI tuner (got {params!r}); run this module only as an NNI trial")
    job_id = str(params["job"])
    logger.info("NNI trial %s: job %s", nni.get_trial_id(), job_id)
    with reporting(TrialReporter()):
        result = run_job(read_json(jobs_dir / f"{job_id}.json"))
    write_json(jobs_dir / f"{job_id}.result.json", {"job": job_id, "trial_id": nni.get_trial_id(),
                                                    "experiment_id": nni.get_experiment_id(), "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
