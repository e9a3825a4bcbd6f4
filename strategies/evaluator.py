"""The one shared evaluator: a Lightning module, its training config and the SER metrics.

Every strategy (DARTS, ENAS, Random, any other NNI strategy), the retraining of a found
architecture and the hand-designed baselines are trained and scored by the code in this
module, so their figures are comparable.

Metrics are computed over a whole split, never per batch: UA (unweighted accuracy, the mean
of per-class recalls over the classes present in the split), WA (weighted accuracy, i.e.
plain accuracy), macro F1 and the confusion matrix.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import nni
import numpy as np
import torch
import torch.nn.functional as F
from nni.nas.evaluator.pytorch import DataLoader, Lightning, LightningModule, Trainer
from pytorch_lightning import Callback
from ser_space import fast
from ser_space.dictconfig import DictConfig
from torch import nn

from .augment import Augmentation
from .progress import EpochBar, enabled
from .trials import nni_metric

logger = logging.getLogger(__name__)

__all__ = [
    "TrainConfig",
    "SERModule",
    "confusion_matrix",
    "classification_metrics",
    "predict_logits",
    "evaluate_model",
    "make_lightning",
    "class_weights",
]


@dataclass(frozen=True)
class TrainConfig(DictConfig):
    """How a network is trained: shared by search, retraining and baselines."""

    max_epochs: int = 50  # training epochs
    batch_size: int = 16  # utterances per mini-batch
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"  # weight optimizer (adamw: decoupled weight decay)
    learning_rate: float = 0.025  # initial weight learning rate
    learning_rate_min: float = 0.001  # cosine schedule floor, reached at the last epoch
    lr_warmup_epochs: int = 0  # epochs of linear learning-rate warm-up before the cosine schedule (0 = none)
    momentum: float = 0.9  # SGD momentum (ignored by Adam)
    weight_decay: float = 3e-4  # L2 penalty on the weights
    gradient_clip: float | None = 5.0  # max gradient norm; None disables clipping
    class_weighted: bool = False  # cross-entropy weighted by inverse class frequency of the training split
    label_smoothing: float = 0.0  # cross-entropy label smoothing while training (validation loss stays plain)
    time_shift: float = 0.0  # augmentation: roll each utterance along time by up to this fraction of its frames
    freq_masks: int = 0  # augmentation: SpecAugment frequency masks per utterance
    freq_mask_width: int = 8  # augmentation: widest frequency mask, in coefficients
    time_masks: int = 0  # augmentation: SpecAugment time masks per utterance
    time_mask_width: int = 20  # augmentation: widest time mask, in frames
    mixup_alpha: float = 0.0  # augmentation: mixup weight ~ Beta(alpha, alpha); 0 = off
    gain_db: float = 0.0  # augmentation: each utterance louder or quieter by up to this many dB, its features moved as a gain moves them (nothing to do under per-utterance normalisation); 0 = off
    drop_path_prob: float = 0.0  # final drop-path probability, ramped from 0 over training (retraining)
    model_selection: Literal["best", "last"] = "best"  # keep the epoch with the best validation UA, or the last
    train_on_val: bool = False  # retraining: train on the validation speakers too (needs model_selection "last")
    average_last: float = 0.0  # retraining: keep the mean of the weights at the ends of this last fraction of the epochs (weight averaging over the schedule's tail, batch-norm statistics then recomputed on the training data); 0 = off; needs model_selection "last"
    accelerator: str = "auto"  # Lightning accelerator: auto, cpu, gpu, ...
    devices: int | str = 1  # Lightning devices
    strategy: str = "auto"  # Lightning Trainer strategy, e.g. "ddp", "ddp_spawn" (not with one-shot searches)
    precision: str = "32-true"  # Lightning precision, e.g. "16-mixed" or "bf16-mixed" on GPU
    num_workers: int = 0  # DataLoader worker processes (features are in memory: 0 is usually fastest)
    seed: int = 2  # seed of this training's weights, batch order and augmentation (ser-nas search --seed sets it too)

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.learning_rate <= 0 or self.learning_rate_min < 0:
            raise ValueError("learning rates must be positive")
        if isinstance(self.lr_warmup_epochs, bool) or not isinstance(self.lr_warmup_epochs, int) \
                or not 0 <= self.lr_warmup_epochs < self.max_epochs:
            raise ValueError(f"lr_warmup_epochs must be an int in [0, max_epochs), got {self.lr_warmup_epochs!r}")
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {self.optimizer!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        Augmentation.from_config(self)  # checks the augmentation fields
        if self.model_selection not in ("best", "last"):
            raise ValueError(f"model_selection must be 'best' or 'last', got {self.model_selection!r}")
        if self.train_on_val and self.model_selection != "last":
            raise ValueError("train_on_val needs model_selection 'last': the epoch cannot be chosen on "
                             "speakers the network trains on")
        if not 0.0 <= self.average_last < 1.0:
            raise ValueError(f"average_last must be in [0, 1), got {self.average_last}")
        if self.average_last and self.model_selection != "last":
            raise ValueError("average_last needs model_selection 'last': it replaces the choice of one epoch")
        if not 0.0 <= self.drop_path_prob < 1.0:
            raise ValueError(f"drop_path_prob must be in [0, 1), got {self.drop_path_prob}")


# ----------------------------------------------------------------------------- metrics

def confusion_matrix(targets: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray,
                     num_classes: int) -> np.ndarray:
    """Counts ``cm[true, predicted]`` (num_classes x num_classes, int64)."""
    t = np.asarray(targets, dtype=np.int64)
    p = np.asarray(predictions, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"{t.shape[0]} targets but {p.shape[0]} predictions")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def classification_metrics(cm: np.ndarray) -> dict[str, float]:
    """UA, WA and macro F1 from a confusion matrix.

    UA averages the recall of the classes that occur in the split (a class absent from a
    test speaker's data cannot be recalled); F1 averages over the same classes.
    """
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    present = support > 0
    total = cm.sum()
    if total == 0:
        return {"ua": float("nan"), "wa": float("nan"), "f1": float("nan")}
    tp = np.diag(cm)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "ua": float(recall[present].mean()),
        "wa": float(tp.sum() / total),
        "f1": float(f1[present].mean()),
    }


def class_weights(labels: Sequence[int], num_classes: int) -> list[float]:
    """Inverse-frequency class weights, normalised to mean 1 over the present classes."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return [float(w) for w in weights]


@torch.no_grad()
def predict_logits(model: nn.Module, loader: Any, device: torch.device | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, classes) and targets (N,) of a model over a dataloader, in eval mode."""
    was_training = model.training
    model.eval()
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    logits, targets = [], []
    for x, y in loader:
        logits.append(model(x.to(device)).float().cpu())
        targets.append(y.cpu())
    model.train(was_training)
    return torch.cat(logits).numpy(), torch.cat(targets).numpy()


def evaluate_model(model: nn.Module, loader: Any, num_classes: int) -> dict[str, Any]:
    """UA, WA, F1, loss and confusion matrix of a model over a whole dataloader."""
    logits, targets = predict_logits(model, loader)
    cm = confusion_matrix(targets, logits.argmax(axis=1), num_classes)
    metrics: dict[str, Any] = classification_metrics(cm)
    metrics["loss"] = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(targets)).item())
    metrics["confusion_matrix"] = cm.tolist()
    metrics["num_utterances"] = int(len(targets))
    return metrics


# ----------------------------------------------------------------------------- module

@nni.trace
class SERModule(LightningModule):
    """Lightning module that trains and scores any SER network (a frozen model or a supernet).

    Logged per epoch: ``train_loss``, and on validation ``val_loss``, ``val_ua``, ``val_wa``,
    ``val_f1``. ``val_acc_step`` (per batch accuracy) is logged on every validation step: ENAS
    uses it as its controller's reward. Inside an NNI trial it reports each epoch's validation
    metrics as intermediate results (``default`` = UA) and the selected epoch's as final.

    Parameters are plain values so NNI can serialise the module for trial processes.
    """

    def __init__(self, num_classes: int, class_weights: Sequence[float] | None = None,
                 optimizer: str = "sgd", learning_rate: float = 0.025, learning_rate_min: float = 0.001,
                 momentum: float = 0.9, weight_decay: float = 3e-4, max_epochs: int = 50,
                 drop_path_prob: float = 0.0, model_selection: str = "best", label_smoothing: float = 0.0,
                 augmentation: dict[str, Any] | None = None, lr_warmup_epochs: int = 0,
                 level: Sequence[float] | None = None) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.optimizer_name = optimizer
        self.learning_rate = float(learning_rate)
        self.learning_rate_min = float(learning_rate_min)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.max_epochs = int(max_epochs)
        self.drop_path_prob = float(drop_path_prob)
        self.model_selection = model_selection
        self.label_smoothing = float(label_smoothing)
        self.augmentation = Augmentation(**(augmentation or {}))
        self.lr_warmup_epochs = int(lr_warmup_epochs)
        # how the features move per dB of gain (gain augmentation): the training split's level
        self.register_buffer("gain_level", None if level is None else torch.tensor(list(level), dtype=torch.float32),
                             persistent=False)
        if self.augmentation.gain_db and level is None:
            logger.info("gain augmentation off: the training features have no gain level (per-utterance "
                        "normalisation removes a gain, and linear-power features are scaled by it)")
        weights = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
        self.register_buffer("class_weight", weights, persistent=False)
        self.history: list[dict[str, Any]] = []  # one entry per validation epoch
        self._val_logits: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self._train_loss: list[float] = []

    @classmethod
    def from_config(cls, config: TrainConfig, num_classes: int, train_labels: Sequence[int] | None = None,
                    level: Sequence[float] | None = None) -> SERModule:
        """The module of ``config``; ``train_labels`` give the class weights, ``level`` the training
        split's gain level (``FeatureDataset.level``, for gain augmentation)."""
        weights = class_weights(train_labels, num_classes) if config.class_weighted and train_labels is not None else None
        return cls(num_classes=num_classes, class_weights=weights, optimizer=config.optimizer,
                   learning_rate=config.learning_rate, learning_rate_min=config.learning_rate_min,
                   momentum=config.momentum, weight_decay=config.weight_decay,
                   max_epochs=config.max_epochs, drop_path_prob=config.drop_path_prob,
                   model_selection=config.model_selection, label_smoothing=config.label_smoothing,
                   augmentation=asdict(Augmentation.from_config(config)), lr_warmup_epochs=config.lr_warmup_epochs,
                   level=level)

    def set_model(self, model: nn.Module) -> None:
        """Set the network to train (NNI's hook), with the fast path's forwards while it trains
        (:func:`ser_space.fast.accelerate`; a no-op when the fast path is off)."""
        super().set_model(model)
        fast.accelerate(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        weight = self.class_weight
        if weight is not None:
            weight = weight.to(logits.device)
        return F.cross_entropy(logits.float(), targets, weight=weight, label_smoothing=label_smoothing)

    # -- training
    def on_train_epoch_start(self) -> None:
        self._train_loss = []
        # ENAS calls validation_step inside its training epoch: start each epoch afresh
        self._val_logits, self._val_targets = [], []
        if self.drop_path_prob > 0:
            from ser_space import set_drop_path_prob

            epochs = max(self.max_epochs, 1)
            set_drop_path_prob(self.model, self.drop_path_prob * self.current_epoch / epochs)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        # augmented on the fly (strategies.augment); DARTS's architecture steps come here too,
        # so alphas see the same kind of batches as the weights
        mixed = self.augmentation(x, y, self.gain_level)
        logits = self(mixed.x)
        loss = self.loss(logits, mixed.y_a, self.label_smoothing)
        if mixed.weight < 1.0:
            loss = mixed.weight * loss + (1.0 - mixed.weight) * self.loss(logits, mixed.y_b, self.label_smoothing)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Recorded here, not in training_step: DARTS also calls training_step for its
        # architecture steps (on validation batches); this hook sees the weight step only.
        # (Not logged through Lightning: batches of one-shot strategies have their own structures.)
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._train_loss.append(float(loss.detach()))

    # -- validation
    def on_validation_epoch_start(self) -> None:
        self._val_logits, self._val_targets = [], []

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        self._val_logits.append(logits.detach().float().cpu())
        self._val_targets.append(y.detach().cpu())
        acc = (logits.argmax(dim=1) == y).float().mean()
        # per-batch accuracy: ENAS reads it from callback_metrics as the controller reward
        self.log("val_acc_step", acc, on_step=True, on_epoch=False, batch_size=len(y))
        return self.loss(logits, y)

    def on_validation_epoch_end(self) -> None:
        if not self._val_logits or self.trainer.sanity_checking:
            return
        logits = torch.cat(self._val_logits)
        targets = torch.cat(self._val_targets)
        self.record_validation(logits, targets)

    def record_validation(self, logits: torch.Tensor, targets: torch.Tensor,
                          extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Score a whole validation split, log it, keep it in ``history``, report it to NNI."""
        cm = confusion_matrix(targets.numpy(), logits.argmax(dim=1).numpy(), self.num_classes)
        metrics = classification_metrics(cm)
        val_loss = float(self.loss(logits, targets))
        entry = {
            "epoch": int(self.current_epoch),
            "train_loss": float(np.mean(self._train_loss)) if self._train_loss else float("nan"),
            "val_loss": val_loss,
            "val_ua": metrics["ua"],
            "val_wa": metrics["wa"],
            "val_f1": metrics["f1"],
            **(extra or {}),
        }
        self.history.append(entry)
        for key in ("val_loss", "val_ua", "val_wa", "val_f1"):
            self.log(key, entry[key], prog_bar=key in ("val_ua", "val_wa"), on_epoch=True)
        logger.info("epoch %d/%d  train_loss %.4f  val_loss %.4f  val UA %.4f  WA %.4f",
                    entry["epoch"] + 1, self.max_epochs, entry["train_loss"], val_loss,
                    metrics["ua"], metrics["wa"])
        if nni.get_current_parameter() is not None:
            nni.report_intermediate_result(nni_metric(entry))
        return entry

    def selected_entry(self) -> dict[str, Any] | None:
        """The history entry chosen by ``model_selection`` (best validation UA, or last)."""
        if not self.history:
            return None
        if self.model_selection == "last":
            return self.history[-1]
        return max(self.history, key=lambda e: (-math.inf if math.isnan(e["val_ua"]) else e["val_ua"], -e["epoch"]))

    def on_fit_end(self) -> None:
        entry = self.selected_entry()
        if entry is not None and nni.get_current_parameter() is not None:
            nni.report_final_result(nni_metric(entry))

    # -- optimisation
    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_name == "adam":
            optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=self.learning_rate,
                                                                weight_decay=self.weight_decay)
        elif self.optimizer_name == "adamw":
            optimizer = torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=self.weight_decay)
        else:
            optimizer = torch.optim.SGD(params, lr=self.learning_rate, momentum=self.momentum,
                                        weight_decay=self.weight_decay)
        if self.lr_warmup_epochs:
            scheduler: Any = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(
                self.lr_warmup_epochs, self.max_epochs, self.learning_rate_min / self.learning_rate))
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(self.max_epochs, 1),
                                                                   eta_min=self.learning_rate_min)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def _warmup_cosine(warmup: int, epochs: int, floor: float) -> Any:
    """Learning-rate factor of epoch ``e``: a linear ramp over ``warmup`` epochs, then the cosine
    schedule from 1 to ``floor`` over the rest (``CosineAnnealingLR``'s curve)."""
    def factor(epoch: int) -> float:
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / max(1, epochs - warmup)))
    return factor


class _StopOnInterrupt(Callback):
    """Lightning 2.0 catches KeyboardInterrupt in ``fit`` ("attempting graceful shutdown",
    ``pytorch_lightning/trainer/call.py``) and returns as if training had finished, so an
    interrupted retraining would be tested and saved as a finished fold. Re-raise it: the
    caller stops, and ``--resume`` redoes the fold."""

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            raise exception


def make_lightning(module: SERModule, config: TrainConfig, train_dataset: Any, val_dataset: Any,
                   callbacks: Sequence[Any] = (), default_root_dir: str | None = None,
                   enable_progress_bar: bool = False, progress: str | None = None,
                   **trainer_kwargs: Any) -> Lightning:
    """NNI's ``Lightning`` evaluator over traced dataloaders, from a :class:`TrainConfig`.

    ``progress`` names an epoch bar with an ETA (:class:`strategies.progress.EpochBar`), shown
    inside :func:`strategies.progress.shown` only.

    ``trainer_kwargs`` pass through to Lightning's Trainer (for example ``strategy="ddp"``);
    ``gradient_clip_val`` is set from the config unless the caller sets it (one-shot
    strategies optimise manually and clip in the strategy instead).
    """
    # batch order follows torch's global RNG, which the pipeline seeds from config.seed
    # (a Generator argument would not survive NNI's serialisation of the loader)
    train_loader = DataLoader(train_dataset, batch_size=config.batch_size, shuffle=True,
                              num_workers=config.num_workers, drop_last=False)
    val_loader = DataLoader(val_dataset, batch_size=max(config.batch_size, 64), shuffle=False,
                            num_workers=config.num_workers)
    kwargs: dict[str, Any] = dict(
        max_epochs=config.max_epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        precision=config.precision,
        gradient_clip_val=config.gradient_clip,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=False,
        callbacks=[*callbacks, _StopOnInterrupt()],
        default_root_dir=default_root_dir,
    )
    if progress and enabled():
        kwargs["callbacks"].append(EpochBar(progress, module))
    kwargs.update(trainer_kwargs)
    return Lightning(module, Trainer(**kwargs), train_dataloaders=train_loader, val_dataloaders=val_loader)
