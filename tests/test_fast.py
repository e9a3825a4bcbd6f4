"""``ser_space.fast``: one switch; accelerated models compute what the plain ones compute.

The supernet's fused kernels are tested in tests/test_kernels.py and against NNI's cell in
tests/test_benchmarks.py; here: the switch, :func:`ser_space.fast.accelerate` and the faster
forwards it gives plain modules (stem, dilated depthwise convolutions, cell dropout).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ser_space import SpaceConfig, build_model, fast, random_architecture
from ser_space.cells import CellPostprocessor, Stem

from conftest import DEVICES, LAYOUTS  # the full_precision fixture is in conftest too


@pytest.fixture(autouse=True)
def fast_on() -> Iterator[None]:
    with fast.switched(True):
        yield


CNN_OPS = ("dil_conv_3x3", "sep_conv_3x3", "skip_connect", "avg_pool_3x3", "dil_conv_5x5")


def _tiny_model(seed: int = 0) -> nn.Module:
    """The tiny space with every op the fast path touches: dilated convolutions at stride 1
    (space-to-batch) and 2 (sub-grid), FactorizedReduce, separable convolutions, pooling."""
    config = SpaceConfig.tiny().replace(cnn_ops=CNN_OPS)
    sample = random_architecture(config, seed=seed)
    ops = [label for label in sample if label.startswith("cnn/") and "/op_" in label]
    for index, label in enumerate(ops):
        sample[label] = CNN_OPS[index % len(CNN_OPS)]
    torch.manual_seed(seed)
    return build_model(sample, config)


# --------------------------------------------------------------------------------------
# the switch and accelerate / restore
# --------------------------------------------------------------------------------------


def test_the_switch_reads_the_environment_in_a_fresh_process() -> None:
    code = "from ser_space import fast; print(fast.enabled())"
    for value, expected in (("0", "False"), ("off", "False"), ("1", "True")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={**os.environ, fast.ENV_VAR: value})
        assert done.stdout.strip() == expected, done.stderr[-1000:]


def test_switched_restores_the_previous_setting() -> None:
    with fast.switched(False):
        assert not fast.enabled()
        with fast.switched(True):
            assert fast.enabled()
        assert not fast.enabled()
    assert fast.enabled()


def test_accelerate_keeps_classes_and_state_dict_and_restore_leaves_a_stock_model() -> None:
    model = _tiny_model()
    before = {name: type(module) for name, module in model.named_modules()}
    keys = list(model.state_dict())
    fast.accelerate(model)
    assert fast.is_accelerated(model)
    assert {name: type(module) for name, module in model.named_modules()} == before
    assert list(model.state_dict()) == keys
    # what was accelerated: the stem, the dilated depthwise convolutions, the cells' dropout
    patched = {name for name, module in model.named_modules() if "_ser_fast_forwards" in module.__dict__}
    assert "stem" in patched
    assert any(isinstance(model.get_submodule(n), nn.Conv2d) for n in patched)
    assert any(n.endswith("postprocessor.dropout") for n in patched)
    fast.accelerate(model)  # idempotent
    copied = copy.deepcopy(model)
    assert fast.is_accelerated(copied)
    fast.restore(model)
    assert not fast.is_accelerated(model)
    assert all("forward" not in module.__dict__ and "_conv_forward" not in module.__dict__
               for module in model.modules())
    assert fast.is_accelerated(copied)  # the copy kept its own


def test_accelerate_is_a_no_op_with_the_switch_off() -> None:
    model = _tiny_model()
    with fast.switched(False):
        fast.accelerate(model)
    assert not fast.is_accelerated(model)


def test_an_accelerated_model_computes_the_plain_models_function() -> None:
    # forward and every gradient, in training mode (batch statistics; dropout is 0 here so
    # no masks differ) and in evaluation mode
    model = _tiny_model(seed=3)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    plain = copy.deepcopy(model)
    fast.accelerate(model)
    x = torch.randn(5, 1, 16, 32)
    for train in (True, False):
        model.train(train)
        plain.train(train)
        y, reference = model(x), plain(x)
        torch.testing.assert_close(y, reference, rtol=1e-4, atol=1e-5)
        if train:
            g = torch.randn_like(y)
            for got, want in zip(torch.autograd.grad(y, list(model.parameters()), g),
                                 torch.autograd.grad(reference, list(plain.parameters()), g)):
                torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)


def test_an_accelerated_module_takes_its_plain_forward_when_the_switch_goes_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stem = fast.accelerate(Stem(1, 6))
    x = torch.randn(2, 1, 8, 8)
    assert stem(x).is_contiguous(memory_format=torch.channels_last)
    with fast.switched(False):
        assert stem(x).is_contiguous()


def test_the_shared_evaluator_accelerates_the_model_it_is_given() -> None:
    from strategies.evaluator import SERModule

    model = _tiny_model()
    module = SERModule(num_classes=4)
    module.set_model(model)
    assert fast.is_accelerated(model)


# --------------------------------------------------------------------------------------
# the faster forwards, op by op
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kernel, stride, dilation", [(3, 1, 2), (5, 1, 2), (3, 2, 2), (5, 2, 2), (3, 1, 1),
                                                      (5, 2, 1)])
@pytest.mark.parametrize("size", [(16, 12), (7, 9), (6, 11), (1, 4)])
def test_accelerated_depthwise_conv_equals_the_plain_dilated_conv(device: str, layout: str, kernel: int, stride: int,
                                                  dilation: int, size: tuple[int, int],
                                                  full_precision: None) -> None:
    # The sub-grid (stride == dilation) and space-to-batch (stride 1, channels-last, even
    # sides) evaluations give the values and gradients of the plain dilated convolution.
    torch.manual_seed(0)
    pad = dilation * (kernel - 1) // 2
    conv = nn.Conv2d(6, 6, kernel, stride=stride, padding=pad, dilation=dilation, groups=6, bias=False).to(device)
    fast.accelerate(conv)
    x = torch.randn(3, 6, *size, device=device).contiguous(memory_format=LAYOUTS[layout]).requires_grad_()
    y = conv(x)
    reference = F.conv2d(x, conv.weight, stride=stride, padding=pad, dilation=dilation, groups=6)
    assert y.shape == reference.shape
    torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, conv.weight), g)
    expected = torch.autograd.grad(reference, (x, conv.weight), g)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # the layout is kept, so the next op runs in it too
    if layout == "channels_last" and min(size) > 1:
        assert y.is_contiguous(memory_format=torch.channels_last)


def test_accelerated_cell_dropout_keeps_layout_rate_scale_and_gradient() -> None:
    drop = fast.accelerate(CellPostprocessor(0.3)).dropout.train()
    assert fast.is_accelerated(drop)
    x = torch.randn(4, 8, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_()
    torch.manual_seed(3)
    y = drop(x)
    kept = y != 0
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert abs(1 - kept.float().mean().item() - 0.3) < 0.01          # 32768 draws
    torch.testing.assert_close(y[kept], (x / 0.7)[kept])
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, kept.float() / 0.7)
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)                                   # seeded: reproducible
    assert not torch.equal(drop(x), y)                               # a new draw each call
    torch.manual_seed(3)
    assert torch.equal(drop(x.detach().contiguous()), y)             # the same mask in NCHW
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_accelerated_stem_runs_channels_last_on_cpu_with_the_nchw_values(in_channels: int,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    stem = fast.accelerate(Stem(in_channels, 6).train())
    x = torch.randn(4, in_channels, 10, 12, requires_grad=True)
    seen = []
    monkeypatch.setattr(torch.nn.Conv2d, "forward", lambda self, v, _f=torch.nn.Conv2d.forward: (
        seen.append(v.is_contiguous(memory_format=torch.channels_last) and v.stride(1) == 1) or _f(self, v)))
    y = stem(x)
    assert seen == [True]                      # the convolution itself runs channels-last
    assert y.is_contiguous(memory_format=torch.channels_last)
    fast.restore(stem)
    reference = stem(x)
    assert reference.is_contiguous()
    torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    params = (x, stem[0].weight, stem[1].weight)
    for got, want in zip(torch.autograd.grad(y, params, g), torch.autograd.grad(reference, params, g)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
