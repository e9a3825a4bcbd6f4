"""On-the-fly augmentation of feature batches, applied by the shared evaluator while training.

Everything here works on a batch of normalised feature images ``x`` (B, 1, F, T) already in
memory, so it costs microseconds, needs no audio and no extra package, and is the same for a
searched supernet, a retrained architecture and a hand-designed network:

- **time shift**: each utterance rolled along time by up to ``time_shift`` of its frames
  (circular, so nothing is lost; the pooled networks see the emotion at another position);
- **SpecAugment masks** (Park et al., 2019): ``freq_masks`` bands of up to
  ``freq_mask_width`` coefficients and ``time_masks`` spans of up to ``time_mask_width``
  frames set to 0, the per-fold mean of normalised features;
- **gain**: each utterance made louder or quieter by up to ``gain_db`` dB, drawn uniformly:
  its features move by the drawn gain times the split's ``level``, how the normalised features
  move per dB (:func:`strategies.data.features.gain_level`; a recording level a new speaker
  may come with);
- **mixup** (Zhang et al., 2018): pairs of utterances mixed with a weight drawn from
  Beta(``mixup_alpha``, ``mixup_alpha``); the loss mixes the two targets' losses with the
  same weight.

Randomness comes from torch's global generator, which the pipeline seeds from the training
config's ``seed``, so a run is reproducible. Nothing is augmented at validation or test time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Augmentation", "Mixed"]


@dataclass(frozen=True)
class Mixed:
    """A mixed batch: inputs, both targets of each row and the weight of the first."""

    x: torch.Tensor
    y_a: torch.Tensor
    y_b: torch.Tensor
    weight: float


@dataclass(frozen=True)
class Augmentation:
    """What to do to each training batch; every field 0 means nothing is done."""

    time_shift: float = 0.0  # fraction of frames an utterance may be rolled by, either way
    freq_masks: int = 0  # SpecAugment frequency masks per utterance
    freq_mask_width: int = 8  # widest frequency mask, in coefficients
    time_masks: int = 0  # SpecAugment time masks per utterance
    time_mask_width: int = 20  # widest time mask, in frames
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixing weight; 0 = no mixup
    gain_db: float = 0.0  # largest gain, in dB, either way (needs the split's level)

    def __post_init__(self) -> None:
        if not 0.0 <= self.time_shift <= 1.0:
            raise ValueError(f"time_shift must be a fraction in [0, 1], got {self.time_shift}")
        for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.mixup_alpha < 0:
            raise ValueError(f"mixup_alpha must be >= 0, got {self.mixup_alpha}")
        if self.gain_db < 0:
            raise ValueError(f"gain_db must be >= 0, got {self.gain_db}")

    @classmethod
    def from_config(cls, config: Any) -> Augmentation:
        """The augmentation fields of a :class:`~strategies.evaluator.TrainConfig` (or any object with them)."""
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})

    @property
    def active(self) -> bool:
        return bool(self.time_shift or (self.freq_masks and self.freq_mask_width)
                    or (self.time_masks and self.time_mask_width) or self.mixup_alpha or self.gain_db)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, level: torch.Tensor | None = None) -> Mixed:
        """The augmented batch (a new tensor; ``x`` is not changed).

        ``level`` (coefficients,): how ``x`` moves per dB of gain; without it there is no gain.
        """
        if not self.active:
            return Mixed(x, y, y, 1.0)
        # every step below is out of place, so the caller's batch is never written to
        if self.gain_db and level is not None:
            x = _gain(x, self.gain_db, level)
        if self.time_shift:
            x = _roll_time(x, self.time_shift)
        if self.freq_masks and self.freq_mask_width:
            x = _mask(x, axis=-2, count=self.freq_masks, width=self.freq_mask_width)
        if self.time_masks and self.time_mask_width:
            x = _mask(x, axis=-1, count=self.time_masks, width=self.time_mask_width)
        if self.mixup_alpha and len(x) > 1:
            weight = float(torch.distributions.Beta(self.mixup_alpha, self.mixup_alpha).sample())
            weight = max(weight, 1.0 - weight)  # the first target stays the larger part
            order = torch.randperm(len(x), device=x.device)
            return Mixed(weight * x + (1.0 - weight) * x[order], y, y[order], weight)
        return Mixed(x, y, y, 1.0)


def _gain(x: torch.Tensor, most_db: float, level: torch.Tensor) -> torch.Tensor:
    if level.shape != (x.shape[-2],):
        raise ValueError(f"gain level has {tuple(level.shape)} entries for {x.shape[-2]} coefficients")
    gains = (torch.rand(x.shape[0], device=x.device) * 2.0 - 1.0) * most_db  # (B,) in dB
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    return x + gains.view(shape).to(x.dtype) * level.to(x.device, x.dtype)[:, None]


def _roll_time(x: torch.Tensor, fraction: float) -> torch.Tensor:
    frames = x.shape[-1]
    most = int(fraction * frames)
    if most < 1:
        return x
    shifts = torch.randint(-most, most + 1, (x.shape[0],), device=x.device)
    index = (torch.arange(frames, device=x.device)[None, :] - shifts[:, None]) % frames  # (B, T)
    index = index.view(x.shape[0], *([1] * (x.dim() - 2)), frames).expand_as(x)
    return torch.gather(x, -1, index)


def _mask(x: torch.Tensor, axis: int, count: int, width: int) -> torch.Tensor:
    size = x.shape[axis]
    width = min(width, size)
    batch = x.shape[0]
    widths = torch.randint(0, width + 1, (batch, count), device=x.device)
    starts = (torch.rand(batch, count, device=x.device) * (size - widths + 1)).long()
    positions = torch.arange(size, device=x.device)[None, None, :]
    masked = ((positions >= starts[..., None]) & (positions < (starts + widths)[..., None])).any(dim=1)  # (B, size)
    shape = [batch] + [1] * (x.dim() - 1)
    shape[axis] = size
    return x.masked_fill(masked.view(shape), 0.0)
