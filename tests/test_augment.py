"""On-the-fly augmentation (strategies.augment) and the training-recipe fields of the evaluator."""

from __future__ import annotations

import pytest
import torch

from strategies.augment import Augmentation
from strategies.evaluator import SERModule, TrainConfig


def _batch(n: int = 6, f: int = 16, t: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(n, 1, f, t) + 5.0, torch.arange(n) % 3


def test_nothing_configured_returns_the_batch_untouched() -> None:
    x, y = _batch()
    mixed = Augmentation()(x, y)
    assert mixed.x is x and mixed.weight == 1.0 and torch.equal(mixed.y_a, y)
    assert not Augmentation().active


def test_time_shift_rolls_each_utterance_within_the_bound() -> None:
    x, y = _batch()
    out = Augmentation(time_shift=0.1)(x, y).x
    assert not torch.equal(out, x)
    for row in range(len(x)):
        # a circular roll by at most 4 of 40 frames: some shift in [-4, 4] reproduces the row
        assert any(torch.equal(torch.roll(x[row], s, dims=-1), out[row]) for s in range(-4, 5))


@pytest.mark.parametrize("axis,field", [(-2, "freq"), (-1, "time")])
def test_masks_zero_whole_bands_no_wider_than_allowed(axis: int, field: str) -> None:
    x, y = _batch(n=32)
    aug = Augmentation(**{f"{field}_masks": 1, f"{field}_mask_width": 5})
    out = aug(x, y).x
    assert torch.equal(x[:, 0].min() > 0, torch.tensor(True))  # inputs are positive: zeros are masks
    zero = out[:, 0] == 0
    other = -1 if axis == -2 else -2
    lines = zero.all(dim=other)  # (B, size along axis): a masked band is zero across the other axis
    assert torch.equal(zero, lines.unsqueeze(other).expand_as(zero))  # nothing but whole bands
    widths = lines.sum(dim=1)
    assert int(widths.max()) <= 5 and int(widths.sum()) > 0
    assert torch.equal(out[~zero.unsqueeze(1)], x[~zero.unsqueeze(1)])  # the rest unchanged


def test_mixup_is_a_convex_pair_with_the_larger_weight_first() -> None:
    x, y = _batch(n=8)
    torch.manual_seed(3)
    mixed = Augmentation(mixup_alpha=0.4)(x, y)
    assert 0.5 <= mixed.weight <= 1.0
    assert torch.equal(mixed.y_a, y)
    # each row is weight * own + (1 - weight) * the row whose label is y_b
    partner = [next(j for j in range(len(x)) if torch.allclose(
        mixed.x[i], mixed.weight * x[i] + (1 - mixed.weight) * x[j], atol=1e-5)) for i in range(len(x))]
    assert [int(y[j]) for j in partner] == mixed.y_b.tolist()


def test_gain_moves_each_utterance_along_the_level_within_the_bound() -> None:
    x, y = _batch(n=64)
    level = torch.linspace(0.5, 2.0, 16)
    out = Augmentation(gain_db=3.0)(x, y, level).x
    shift = (out - x)[:, 0]  # (B, F, T): per utterance, a gain times the level, the same in every frame
    gains = shift[:, :, 0] / level  # (B, F)
    assert torch.allclose(shift, shift[:, :, :1].expand_as(shift), atol=1e-5)
    assert torch.allclose(gains, gains[:, :1].expand_as(gains), atol=1e-4)
    assert gains.abs().max() <= 3.0 + 1e-4 and gains[:, 0].std() > 0.5  # drawn per utterance, within +-3 dB
    # without a level (per-utterance normalisation) there is nothing to move
    assert torch.equal(Augmentation(gain_db=3.0)(x, y).x, x)
    with pytest.raises(ValueError, match="gain level"):
        Augmentation(gain_db=3.0)(x, y, torch.ones(5))


def test_learning_rate_warms_up_linearly_then_follows_the_cosine() -> None:
    def rates(config: TrainConfig) -> list[float]:
        module = SERModule.from_config(config, 3)
        module.set_model(torch.nn.Linear(4, 3))
        optimizers = module.configure_optimizers()
        optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
        out = []
        for _ in range(config.max_epochs):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    plain = rates(TrainConfig(max_epochs=10, learning_rate=1.0, learning_rate_min=0.0))
    warm = rates(TrainConfig(max_epochs=13, learning_rate=1.0, learning_rate_min=0.0, lr_warmup_epochs=3))
    assert warm[:3] == pytest.approx([0.25, 0.5, 0.75])  # the ramp, then the plain schedule over the rest
    assert warm[3:] == pytest.approx(plain, abs=1e-6)
    with pytest.raises(ValueError, match="lr_warmup_epochs"):
        TrainConfig(max_epochs=3, lr_warmup_epochs=3)


@pytest.mark.parametrize("field,value", [("time_shift", 1.5), ("freq_masks", -1), ("mixup_alpha", -0.1),
                                         ("label_smoothing", 1.0), ("optimizer", "rmsprop"), ("gain_db", -1.0),
                                         ("lr_warmup_epochs", -1)])
def test_bad_recipe_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field if field != "optimizer" else "optimizer"):
        TrainConfig(**{field: value})


def test_training_step_uses_both_mixed_targets_and_label_smoothing() -> None:
    x, y = _batch(n=8)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 40, 3))

    def loss(config: TrainConfig) -> float:
        module = SERModule.from_config(config, 3)
        module.set_model(model)
        torch.manual_seed(5)
        return float(module.training_step((x, y), 0))

    plain = loss(TrainConfig())
    assert loss(TrainConfig(label_smoothing=0.2)) != pytest.approx(plain)
    assert loss(TrainConfig(mixup_alpha=0.4)) != pytest.approx(plain)
    # validation loss stays plain cross-entropy whatever the smoothing
    module = SERModule.from_config(TrainConfig(label_smoothing=0.2), 3)
    logits = torch.randn(8, 3)
    assert float(module.loss(logits, y)) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)))


def test_adamw_is_decoupled_weight_decay() -> None:
    module = SERModule.from_config(TrainConfig(optimizer="adamw", weight_decay=0.05), 3)
    module.set_model(torch.nn.Linear(4, 3))
    optimizer = module.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["weight_decay"] == 0.05
