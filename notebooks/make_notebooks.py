"""Write the tutorial notebooks of this folder (run: ``python notebooks/make_notebooks.py``).

The notebooks are generated so their code stays reviewable as Python here. They import from
the ``ser_space`` and ``strategies`` packages only and define no ModelSpace, LightningModule
or Dataset (NNI pickles classes defined in ``__main__`` by value). Their settings are tiny so
they run in minutes on a laptop CPU: raise them for real results. ``tests/test_notebooks.py``
executes every notebook and checks its printed values.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def _notebook(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    notebook = new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    for kind, text in cells:
        text = text.strip("\n")
        notebook.cells.append(new_markdown_cell(text) if kind == "md" else new_code_cell(text))
    return notebook


QUICKSTART = [
    ("md", """
# Quickstart: search, retrain and run a SER architecture

The embedded synthetic "acted emotion" corpus (espeak-ng voices as speakers, emotions as
prosody) is generated and prepared, DARTS searches the CNN-LSTM space on the training speakers
of fold 0, the found architecture is retrained from scratch and tested once on the held-out
speaker, and the trained model labels a few wav files.

Everything is imported from the `ser_space` and `strategies` packages. The settings below are
tiny so the notebook runs in a few minutes on a CPU.
"""),
    ("code", """
# Settings: tiny so this runs in minutes on a CPU -- raise these for real results
# (e.g. SEARCH_EPOCHS = 50, RETRAIN_EPOCHS = 200, SPACE = SpaceConfig.paper()).
from ser_space import SpaceConfig

SEARCH_EPOCHS = 1
RETRAIN_EPOCHS = 2
SPACE = SpaceConfig.tiny()
OUTPUT = "runs"
"""),
    ("code", """
import logging

from strategies import compat

compat.apply()  # the NNI 3.0 fixes this project needs (see docs/installation.md)
logging.basicConfig(level=logging.WARNING)
"""),
    ("md", "## 1. Prepare the corpus: manifest, speaker-independent folds, MFCC features"),
    ("code", """
from strategies.data.config import DataConfig
from strategies.data.prepare import prepare_data, summary_table

data = DataConfig()  # the synthetic corpus, leave-one-speaker-out, FeatureConfig.small() MFCCs
prepared = prepare_data(data, progress=False)
print(summary_table(prepared))
print("classes:", prepared.classes, "| folds:", len(prepared.folds))
"""),
    ("md", "## 2. Search with DARTS, retrain, test (one fold)"),
    ("code", """
from strategies.pipeline import run_pipeline
from strategies.recipes import RunConfig
from strategies.search import SearchConfig

config = RunConfig(
    data=data,
    space=SPACE,
    search=SearchConfig(strategy="darts", epochs=SEARCH_EPOCHS),
    retrain=RunConfig().retrain.replace(max_epochs=RETRAIN_EPOCHS),
    folds=(0,),
)
run_dir, summary = run_pipeline(config, output_dir=OUTPUT, progress=False)
fold = summary["per_fold"][0]
print("run folder:", run_dir)
print(f"test UA {fold['test_ua']:.4f}  WA {fold['test_wa']:.4f}  parameters {fold['parameters']}")
"""),
    ("code", """
from IPython.display import Image, display
from ser_space import load_architecture

architecture = load_architecture(run_dir / "fold-0" / "architecture.json")
print({label: value for label, value in architecture.sample.items() if "/op_" in label or label == "rnn/pool"})
display(Image(filename=str(run_dir / "fold-0" / "cells.png")))
"""),
    ("md", "## 3. Label new audio with the trained model"),
    ("code", """
from strategies.predict import load_predictor

test_speakers = set(prepared.folds[0].test_speakers)
clips = prepared.manifest[prepared.manifest["speaker"].isin(test_speakers)].groupby("emotion").head(1)
predictor = load_predictor(run_dir)  # fold-0/model.pt: weights, architecture, features, normalisation
predictions = predictor.predict(list(clips["path"]))  # one row per file; status says whether it was judged
predictions.insert(1, "true", list(clips["emotion"]))
columns = ["path", "true", "emotion", *[c for c in predictions if c.startswith("p_")], "status", "speech_seconds"]
print(predictions[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
"""),
]

OWN_EXPERIMENT = [
    ("md", """
# SERSpace in your own NNI experiment

`ser_space.SERSpace` is an ordinary NNI 3.0 `ModelSpace`, so any NNI strategy can search it.
This notebook runs NNI's **GumbelDARTS** (not one of the three strategies compared in the
paper) with the project's shared evaluator (`strategies.evaluator.SERModule` through
`make_lightning`) on `strategies.data.dataset.FeatureDataset`s, through a plain
`NasExperiment`, then rebuilds and scores the exported architecture.
"""),
    ("code", """
# Settings: tiny so this runs in minutes on a CPU -- raise these for real results.
EPOCHS = 1
BATCH_SIZE = 32
"""),
    ("code", """
import logging
from pathlib import Path

from strategies import compat

compat.apply()
logging.basicConfig(level=logging.WARNING)
"""),
    ("md", "## Data: one speaker-independent fold as FeatureDatasets"),
    ("code", """
from ser_space import SERSpace, SpaceConfig
from strategies.data.config import DataConfig
from strategies.data.prepare import prepare_data
from strategies.pipeline import adapt_space, fold_datasets

prepared = prepare_data(DataConfig(), progress=False)
datasets, normalizer = fold_datasets(prepared, prepared.folds[0])  # FeatureDataset per split, train-fitted normalisation
print({split: len(dataset) for split, dataset in datasets.items()})

space_config = adapt_space(SpaceConfig.tiny(), prepared)  # input shape and classes follow the data
space = SERSpace(space_config.to_dict())
print("choices in the space:", len(space.simplify()))
"""),
    ("md", "## The shared evaluator and an NNI strategy"),
    ("code", """
from nni.nas.experiment import NasExperiment
from nni.nas.strategy import GumbelDARTS

from strategies.evaluator import SERModule, TrainConfig, make_lightning

train = TrainConfig(max_epochs=EPOCHS, batch_size=BATCH_SIZE, optimizer="adam", learning_rate=3e-3, seed=0)
module = SERModule.from_config(train, num_classes=space_config.num_classes)
# one-shot strategies step the optimisers themselves: no Lightning gradient clipping
evaluator = make_lightning(module, train, datasets["train"], datasets["val"], gradient_clip_val=None)

experiment = NasExperiment(space, evaluator, GumbelDARTS())
experiment.config.experiment_working_directory = str(Path("nni-experiments").resolve())
experiment.run()
exported = experiment.export_top_models(formatter="dict")[0]
experiment.stop()
"""),
    ("md", "## Rebuild the found architecture and score it with the same metrics"),
    ("code", """
from torch.utils.data import DataLoader

from ser_space import build_model, count_parameters, save_architecture, validate_architecture
from strategies.evaluator import evaluate_model

sample = validate_architecture(exported, space_config)  # checked against the space before use
save_architecture("gumbel_darts_architecture.json", sample, space_config, meta={"method": "gumbel_darts"})
model = build_model(sample, space_config)
print("parameters:", count_parameters(model))
# the supernet weights are not inherited: the fixed model is untrained here; retrain it with
# `ser-nas retrain gumbel_darts_architecture.json` (or strategies.pipeline.train_model)
scores = evaluate_model(model, DataLoader(datasets["val"], batch_size=64), space_config.num_classes)
print(f"untrained validation UA {scores['ua']:.4f}  WA {scores['wa']:.4f}")
"""),
    ("md", """
The same space and evaluator work with multi-trial strategies too
(`nni.nas.strategy.RegularizedEvolution`, `Random`, `GridSearch`, `PolicyBasedRL`, and `TPE` after
`strategies.compat.apply()`, which NNI 3.0's TPE needs to read a cell's input choices): they run one trial per
architecture through NNI's manager and web UI. `strategies.search.run_search` wraps both kinds
and adds per-epoch validation; `strategies.search.registry.STRATEGIES` lists what `ser-nas` offers.
"""),
]

COMPARE = [
    ("md", """
# Compare NAS strategies under equal search budgets

`strategies.compare.run_compare` runs every strategy x seed x fold with the same search budget
(one-shot: `epochs` supernet epochs; multi-trial: `round(2 * epochs / trial_epochs)` trials),
retrains every found architecture with the same settings, adds a hand-designed CNN-LSTM and a
reference baseline (MFCC statistics + logistic regression, `strategies.reference`) as rows, and
writes a report computed from the run folders.
"""),
    ("code", """
# Settings: tiny so this runs in minutes on a CPU -- raise these for real results
# (e.g. EPOCHS = 50, SEEDS = 3, FOLDS = None for every fold, RETRAIN_EPOCHS = 200).
STRATEGIES = ("darts", "random")
SEEDS = 1
FOLDS = (0,)
EPOCHS = 1
TRIAL_EPOCHS = 1
RETRAIN_EPOCHS = 2
"""),
    ("code", """
import logging

from strategies import compat

compat.apply()
logging.basicConfig(level=logging.WARNING)
"""),
    ("code", """
from ser_space import SpaceConfig
from strategies.compare import CompareConfig, run_compare

config = CompareConfig(strategies=STRATEGIES, seeds=SEEDS, folds=FOLDS, baseline="cnn_lstm",
                       references=("mfcc_stats",), epochs=EPOCHS, trial_epochs=TRIAL_EPOCHS, space=SpaceConfig.tiny(),
                       retrain=CompareConfig().retrain.replace(max_epochs=RETRAIN_EPOCHS))
compare_dir, report = run_compare(config, output_dir="runs", progress=False)
print("comparison folder:", compare_dir)
"""),
    ("md", "## The report: per-strategy table, per-run results, figures"),
    ("code", """
from IPython.display import Markdown, display

display(Markdown(report["markdown"]))
for row in report["table"]:
    print(f"{row['method']}: test UA {row['test_ua_mean']:.4f} +- {row['test_ua_std']:.4f} over {row['runs']} run(s)")
"""),
    ("code", """
import pandas as pd

results = pd.read_csv(compare_dir / "results.csv")  # one row per strategy / seed / fold
results
"""),
    ("code", """
from IPython.display import Image

display(Image(filename=str(compare_dir / "ua_vs_cost.png")))
display(Image(filename=str(compare_dir / "validation_curves.png")))
"""),
    ("md", """
`run_compare(None, resume=compare_dir)` (or `ser-nas compare --resume DIR`) finishes an
interrupted comparison: finished runs are kept, missing ones run, and the report is rebuilt
from the run folders by `strategies.compare.build_report`.
"""),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_ser_space_in_your_nni_experiment.ipynb": OWN_EXPERIMENT,
    "03_compare_strategies.ipynb": COMPARE,
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        notebook = _notebook(cells)
        nbformat.validate(notebook)
        nbformat.write(notebook, HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
