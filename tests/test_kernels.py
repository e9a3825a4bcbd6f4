"""``ser_space.fast.kernels``: the fused CPU pieces of the DARTS supernet equal plain PyTorch.

Each function is compared, values and every gradient, with the modules it replaces, at the
supernet's shapes in miniature (odd and even sides, stride 1 and 2, 3x3 and 5x5 kernels),
and with the weights or the alphas frozen as ``LeanDARTS`` runs them.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ser_space.fast import kernels as kernel_module
from ser_space.fast.kernels import (
    ConvTerm,
    batch_to_space,
    depthwise_conv,
    mixed_sum,
    pointwise_bn,
    space_to_batch,
)

CL = torch.channels_last


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)  # every test draws the same weights and gradients on every run


def _map(*shape: int, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) + shift).contiguous(memory_format=CL)


def _close(a: torch.Tensor | None, b: torch.Tensor | None, name: str, rtol: float = 1e-4) -> None:
    assert (a is None) == (b is None), name
    if a is not None:
        torch.testing.assert_close(a, b, rtol=rtol, atol=1e-5, msg=name)


@pytest.mark.parametrize("kernel,stride,dilation", [(3, 1, 1), (5, 1, 1), (3, 2, 1), (5, 2, 1), (3, 1, 2),
                                                     (5, 2, 2)])
@pytest.mark.parametrize("size", [(12, 10), (9, 13)])
@pytest.mark.parametrize("same", [True, False])
def test_depthwise_conv_equals_conv2d(kernel: int, stride: int, dilation: int, size: tuple[int, int],
                                      same: bool) -> None:
    padding = dilation * (kernel - 1) // 2 if same else 0
    x = _map(3, 5, *size).requires_grad_()
    w = torch.randn(5, 1, kernel, kernel, requires_grad=True)
    ref = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=5)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, w), g)
    out = depthwise_conv(x, w, stride, padding, dilation)
    grads = torch.autograd.grad(out, (x, w), g)
    _close(out, ref, "out")
    _close(grads[0], ref_grads[0], "x")
    _close(grads[1], ref_grads[1], "weight")  # the 5-wide kernels take the split path


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_depthwise_conv_keeps_its_input_only_for_the_weight_gradient(stride: int, dtype: torch.dtype) -> None:
    # at stride 2 the input gradient comes from the backward-data kernel, given only x's shape
    x = _map(2, 4, 8, 8).to(dtype).requires_grad_()
    w = torch.randn(4, 1, 5, 5, dtype=dtype, requires_grad=True)
    frozen = depthwise_conv(x, w.detach(), stride, 2)
    assert frozen.grad_fn.saved_tensors[0] is None       # nothing kept for a frozen weight
    g = torch.randn_like(frozen)
    (grad_x,) = torch.autograd.grad(frozen, x, g)
    assert grad_x.dtype == dtype
    _close(grad_x, torch.autograd.grad(F.conv2d(x, w, stride=stride, padding=2, groups=4), x, g)[0], "x")
    assert depthwise_conv(x, w, stride, 2).grad_fn.saved_tensors[0] is not None


def test_space_to_batch_round_trip_and_dilated_convolution() -> None:
    x = _map(2, 3, 8, 6)
    grids = space_to_batch(x)
    assert grids.shape == (8, 3, 4, 3)
    torch.testing.assert_close(grids[2 * 2: 3 * 2], x[:, :, 1::2, 0::2])   # grid (1, 0)
    torch.testing.assert_close(batch_to_space(grids, 2), x)
    w = torch.randn(3, 1, 3, 3)
    dilated = F.conv2d(x, w, padding=2, dilation=2, groups=3)
    torch.testing.assert_close(batch_to_space(F.conv2d(grids, w, padding=1, groups=3), 2), dilated,
                               rtol=1e-5, atol=1e-5)


def test_is_channels_last_does_not_count_a_one_channel_nchw_map() -> None:
    assert kernel_module.is_channels_last(_map(2, 3, 4, 5))
    assert not kernel_module.is_channels_last(torch.randn(2, 3, 4, 5))
    one = torch.randn(2, 1, 4, 5)
    assert one.is_contiguous(memory_format=torch.channels_last)     # PyTorch's check passes...
    assert not kernel_module.is_channels_last(one)                  # ...but it is stored NCHW
    assert kernel_module.is_channels_last(torch.empty_like(one, memory_format=torch.channels_last))
    assert not kernel_module.is_channels_last(torch.randn(2, 3, 4))


@pytest.mark.parametrize("size", [(8, 6), (7, 9)])
@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
def test_subgrids_equal_the_slices_and_keep_the_layout_in_the_gradient(size: tuple[int, int], layout: str) -> None:
    x = _map(2, 3, *size) if layout == "channels_last" else torch.randn(2, 3, *size)
    x.requires_grad_()
    offsets = ((0, 0), (1, 1), (0, 1))
    grids = kernel_module.subgrids(x, offsets)
    slices = [x[:, :, r::2, c::2] for r, c in offsets]
    weights = [torch.randn_like(s) for s in slices]
    for grid, piece in zip(grids, slices):
        assert torch.equal(grid, piece)
        assert grid.is_contiguous(memory_format=torch.channels_last if layout == "channels_last"
                                  else torch.contiguous_format)
    (got,) = torch.autograd.grad(sum((g * w).sum() for g, w in zip(grids, weights)), x)
    (want,) = torch.autograd.grad(sum((s * w).sum() for s, w in zip(slices, weights)), x)
    assert torch.equal(got, want)
    # the slices' own backward gives an NCHW map whatever x's layout; subgrids keeps x's
    assert got.is_contiguous(memory_format=torch.channels_last if layout == "channels_last"
                             else torch.contiguous_format)
    # one grid's gradient only, and a stride of 3 (a dilation-3 convolution's sub-grid)
    (only,) = torch.autograd.grad(kernel_module.subgrids(x, ((1, 2),), 3)[0].sum(), x)
    expected = torch.zeros_like(x)
    expected[:, :, 1::3, 2::3] = 1
    assert torch.equal(only, expected)


def _bn(channels: int, affine: bool, seed: int = 0) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, affine=affine)
    if affine:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5, generator=g)
            norm.bias.uniform_(-0.5, 0.5, generator=g)
    return norm.train()


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("with_depthwise", [False, True])
def test_pointwise_bn_equals_modules(relu: bool, affine: bool, with_depthwise: bool) -> None:
    z = _map(4, 6, 7, 9, shift=1.5).requires_grad_()   # a mean far from 0: the moments must hold up
    conv = nn.Conv2d(6, 8, 1, bias=False)
    norm = _bn(8, affine)
    depthwise = nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False) if with_depthwise else None
    ref_norm, ref_conv, ref_dw = copy.deepcopy(norm), copy.deepcopy(conv), copy.deepcopy(depthwise)

    y = ref_norm(ref_conv(z))
    y = torch.relu(y) if relu else y
    ref = ref_dw(y) if ref_dw is not None else y
    out = pointwise_bn(z, conv.weight, norm, relu=relu, depthwise=depthwise)
    _close(out, ref, "out")
    g = torch.randn_like(ref)
    ref_params = [p for m in (ref_conv, ref_norm, ref_dw) if m is not None for p in m.parameters()]
    params = [p for m in (conv, norm, depthwise) if m is not None for p in m.parameters()]
    ref_grads = torch.autograd.grad(ref, [z, *ref_params], g)
    grads = torch.autograd.grad(out, [z, *params], g)
    for i, (a, b) in enumerate(zip(grads, ref_grads)):
        _close(a, b, f"grad {i}", rtol=1e-3)
    _close(norm.running_mean, ref_norm.running_mean, "running_mean")
    _close(norm.running_var, ref_norm.running_var, "running_var")
    assert int(norm.num_batches_tracked) == int(ref_norm.num_batches_tracked) == 1


def test_pointwise_bns_equal_one_call_per_term(monkeypatch: pytest.MonkeyPatch) -> None:
    # three terms on one map size: with a depthwise convolution and ReLU, without, and one whose
    # moments cancel (the exact two-pass statistics), batched against separate calls
    exact_calls: list[tuple[int, int]] = []   # (terms in the group, term)
    original = kernel_module._Group.exact_backward
    monkeypatch.setattr(kernel_module._Group, "exact_backward",
                        lambda self, t, *a: exact_calls.append((len(self.exact), t)) or original(self, t, *a))
    g = torch.Generator().manual_seed(1)
    base = 100.0 + 0.01 * torch.randn(2, 1, 9, 9, generator=g)
    cancelling = torch.cat([base + 0.01 * torch.randn(2, 1, 9, 9, generator=g) for _ in range(4)], 1)
    inputs = [_map(2, 4, 9, 9, shift=1.5), _map(2, 4, 9, 9, seed=3), cancelling.contiguous(memory_format=CL)]
    kernels = [torch.randn(4, 4, 1, 1, generator=g), torch.randn(4, 4, 1, 1, generator=g),
               torch.tensor([[1.0, -1.0, 0, 0], [0, 0, 1.0, -1.0], [1.0, 0, 0, 0], [0, 1.0, 0, 0]]).view(4, 4, 1, 1)]
    depthwise = [nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), None,
                 nn.Conv2d(4, 4, 5, padding=2, groups=4, bias=False)]
    for relu in (True, False):
        results = []
        for batched in (True, False):
            zs = [z.clone().requires_grad_() for z in inputs]
            ws = [k.clone().requires_grad_() for k in kernels]
            dws = copy.deepcopy(depthwise)
            norms = [_bn(4, affine=t == 1, seed=t) for t in range(3)]
            terms = list(zip(zs, ws, norms, dws))
            outs = (kernel_module.pointwise_bns(terms, relu=relu) if batched else
                    [pointwise_bn(z, w, n, relu=relu, depthwise=d) for z, w, n, d in terms])
            params = [*zs, *ws, *(p for m in (*norms, *dws) if m is not None for p in m.parameters())]
            loss = sum((o * torch.randn(o.shape, generator=torch.Generator().manual_seed(t))).sum()
                       for t, o in enumerate(outs))
            results.append((outs, torch.autograd.grad(loss, params),
                            [(n.running_mean.clone(), n.running_var.clone()) for n in norms]))
        (outs, grads, stats), (ref_outs, ref_grads, ref_stats) = results
        for a, b in zip(outs, ref_outs):
            torch.testing.assert_close(a, b)
        for i, (a, b) in enumerate(zip(grads, ref_grads)):
            torch.testing.assert_close(a, b, msg=f"grad {i}")
        for (m, v), (rm, rv) in zip(stats, ref_stats):
            torch.testing.assert_close(m, rm)
            torch.testing.assert_close(v, rv)
    # only the third term took the two-pass path, batched (3 terms) and alone, with and without ReLU
    assert exact_calls == [(3, 2), (1, 0)] * 2
    assert kernel_module.pointwise_bns([]) == ()


def _reference_node(conv_terms: list[ConvTerm], plain: list[tuple[torch.Tensor, torch.Tensor]],
                    norms: list[nn.Module], batch: int) -> torch.Tensor:
    out = 0
    for term, norm in zip(conv_terms, norms):
        y = norm(F.conv2d(term.input, term.kernel))
        out = out + term.weight * (batch_to_space(y, batch) if term.grid else y)
    for weight, value in plain:
        out = out + weight * value
    return out


@pytest.mark.parametrize("frozen", ["none", "weights", "alphas"])
def test_mixed_sum_equals_weighted_sum_of_modules(frozen: str) -> None:
    """Plain, space-to-batch (dilated) and block-kernel (FactorizedReduce) terms, and poolings."""
    b, c, h, w = 3, 6, 8, 10
    alphas = torch.randn(6, requires_grad=frozen != "alphas")
    weights = torch.softmax(alphas, 0)
    z1, z2 = _map(b, c, h, w, seed=1, shift=0.5), _map(b, c, h, w, seed=2)
    grid = _map(4 * b, c, h // 2, w // 2, seed=3, shift=-1.0)
    stacked = _map(b, 2 * c, h, w, seed=4)
    pooled, skip = _map(b, c, h, w, seed=5), _map(b, c, h, w, seed=6)
    inputs = [x.requires_grad_() for x in (z1, z2, grid, stacked, pooled, skip)]
    kernels = [torch.randn(c, c, 1, 1), torch.randn(c, c, 1, 1), torch.randn(c, c, 1, 1),
               torch.block_diag(torch.randn(c // 2, c), torch.randn(c // 2, c)).view(c, 2 * c, 1, 1)]
    kernels = [k.requires_grad_(frozen != "weights") for k in kernels]
    norms = [_bn(c, affine=False) for _ in range(4)]
    ref_norms = copy.deepcopy(norms)

    def terms(norm_list: list[nn.Module]) -> list[ConvTerm]:
        return [ConvTerm(weights[0], z1, kernels[0], norm_list[0]),
                ConvTerm(weights[1], z2, kernels[1], norm_list[1]),
                ConvTerm(weights[2], grid, kernels[2], norm_list[2], grid=True),
                ConvTerm(weights[3], stacked, kernels[3], norm_list[3])]

    plain = [(weights[4], pooled), (weights[5], skip)]
    out = mixed_sum((b, c, h, w), terms(norms), plain)
    ref = _reference_node(terms(ref_norms), plain, ref_norms, b)
    assert out.is_contiguous(memory_format=CL)
    _close(out, ref, "out")
    wrt = [*inputs, *kernels, alphas]
    wrt = [t for t in wrt if t.requires_grad]
    g = torch.randn_like(ref)
    for i, (a, r) in enumerate(zip(torch.autograd.grad(out, wrt, g, retain_graph=True),
                                   torch.autograd.grad(ref, wrt, g))):
        _close(a, r, f"grad {i}", rtol=1e-3)
    for norm, ref_norm in zip(norms, ref_norms):
        _close(norm.running_mean, ref_norm.running_mean, "running_mean")
        _close(norm.running_var, ref_norm.running_var, "running_var")


def test_mixed_sum_with_only_plain_or_only_grid_terms() -> None:
    b, c, h, w = 2, 4, 6, 6
    weight = torch.tensor(0.25, requires_grad=True)
    value = _map(b, c, h, w).requires_grad_()
    out = mixed_sum((b, c, h, w), [], [(weight, value)])
    _close(out, weight * value, "plain only")
    grid = _map(4 * b, c, h // 2, w // 2, seed=1).requires_grad_()
    kernel = torch.randn(c, c, 1, 1, requires_grad=True)
    norm, ref_norm = _bn(c, False), _bn(c, False)
    out = mixed_sum((b, c, h, w), [ConvTerm(weight, grid, kernel, norm, grid=True)], [])
    ref = weight * batch_to_space(ref_norm(F.conv2d(grid, kernel)), b)
    _close(out, ref, "grid only")
    g = torch.randn_like(ref)
    for i, (a, r) in enumerate(zip(torch.autograd.grad(out, (grid, kernel, weight), g),
                                   torch.autograd.grad(ref, (grid, kernel, weight), g))):
        _close(a, r, f"grad {i}", rtol=1e-3)


@pytest.mark.filterwarnings("ignore")  # NNI's mutation warnings, for this test only
def test_fused_cell_is_used_on_cpu_in_training_and_not_in_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.nas.strategy import DARTS

    from ser_space import SERSpace, SpaceConfig, fast

    calls = []
    original = kernel_module.mixed_sum
    monkeypatch.setattr(kernel_module, "mixed_sum", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = fast.accelerate(DARTS().mutate_model(SERSpace(SpaceConfig.tiny())))
    x = torch.randn(2, 1, 16, 32)
    model.train()
    model(x).sum().backward()
    assert calls
    calls.clear()
    model.eval()
    with torch.no_grad():
        model(x)
    assert not calls
    model.train()
    with fast.switched(False):   # the switch off: the plain cell
        model(x)
    assert not calls


def test_statistics_hold_where_the_moments_cancel() -> None:
    """y = z_0 - z_1 of two large, nearly equal inputs: from the moments alone every digit of
    the variance (and of the weight gradient) would be lost; the fused function must be as
    accurate as PyTorch's float32 batch norm (up to a small factor), against a float64 reference."""
    g = torch.Generator().manual_seed(0)
    base = 100.0 + 0.01 * torch.randn(2, 1, 9, 9, generator=g)
    z = torch.cat([base + 0.01 * torch.randn(2, 1, 9, 9, generator=g) for _ in range(4)], 1)
    z = z.contiguous(memory_format=CL).requires_grad_()
    kernel = torch.tensor([[1.0, -1.0, 0, 0], [0, 0, 1.0, -1.0], [1.0, 0, 0, 0]]).view(3, 4, 1, 1)
    kernel.requires_grad_()
    norms = [_bn(3, False) for _ in range(3)]
    fused = pointwise_bn(z, kernel, norms[0])
    plain = norms[1](F.conv2d(z, kernel))
    exact = norms[2].double()(F.conv2d(z.double(), kernel.double()))
    g_out = torch.randn(exact.shape, generator=g, dtype=exact.dtype)
    results = [(fused, *torch.autograd.grad(fused, (z, kernel), g_out.float())),
               (plain, *torch.autograd.grad(plain, (z, kernel), g_out.float()))]
    reference = (exact, *torch.autograd.grad(exact, (z, kernel), g_out))
    for name, mine, pytorch, truth in zip(("out", "z", "kernel"), *results, reference):
        error, pytorch_error = (mine.double() - truth).abs().max(), (pytorch.double() - truth).abs().max()
        # as accurate as PyTorch's own float32 evaluation, up to a small factor (both are rounding)
        assert error <= 4 * pytorch_error + 1e-3 * truth.abs().max(), (name, float(error), float(pytorch_error))
    torch.testing.assert_close(norms[0].running_var, norms[1].running_var, rtol=1e-3, atol=1e-6)


def test_mixed_sum_statistics_hold_where_the_moments_cancel() -> None:
    g = torch.Generator().manual_seed(1)
    base = 100.0 + 0.01 * torch.randn(2, 1, 8, 8, generator=g)
    z = torch.cat([base + 0.01 * torch.randn(2, 1, 8, 8, generator=g) for _ in range(2)], 1)
    z = z.contiguous(memory_format=CL).requires_grad_()
    other = _map(2, 2, 8, 8, seed=2).requires_grad_()
    kernel = torch.tensor([[1.0, -1.0], [0.5, -0.5]]).view(2, 2, 1, 1).requires_grad_()
    weights = torch.softmax(torch.tensor([0.3, -0.2]), 0).requires_grad_()
    norms = [_bn(2, False) for _ in range(3)]
    fused = mixed_sum((2, 2, 8, 8), [ConvTerm(weights[0], z, kernel, norms[0])], [(weights[1], other)])
    plain = weights[0] * norms[1](F.conv2d(z, kernel)) + weights[1] * other
    exact = (weights[0].double() * norms[2].double()(F.conv2d(z.double(), kernel.double()))
             + weights[1].double() * other.double())
    g_out = torch.randn(exact.shape, generator=g, dtype=exact.dtype)
    wrt = (z, kernel, other)
    results = [(fused, *torch.autograd.grad(fused, wrt, g_out.float(), retain_graph=True)),
               (plain, *torch.autograd.grad(plain, wrt, g_out.float(), retain_graph=True))]
    reference = (exact, *torch.autograd.grad(exact, wrt, g_out))
    for name, mine, pytorch, truth in zip(("out", "z", "kernel", "other"), *results, reference):
        error, pytorch_error = (mine.double() - truth).abs().max(), (pytorch.double() - truth).abs().max()
        # as accurate as PyTorch's own float32 evaluation, up to a small factor (both are rounding)
        assert error <= 4 * pytorch_error + 1e-3 * truth.abs().max(), (name, float(error), float(pytorch_error))


def test_without_fused_convolutions_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where oneDNN's fused convolutions are missing, separate convolutions give the same node."""
    z = _map(2, 4, 6, 6).requires_grad_()
    kernel = torch.randn(4, 4, 1, 1, requires_grad=True)
    weight = torch.tensor(0.6, requires_grad=True)
    value = _map(2, 4, 6, 6, seed=1)
    assert kernel_module._fused_conv_works()
    results = []
    for fused in (True, False):
        monkeypatch.setattr(kernel_module, "_fused_conv_works", lambda fused=fused: fused)
        out = mixed_sum((2, 4, 6, 6), [ConvTerm(weight, z, kernel, _bn(4, False))], [(weight, value)])
        h = pointwise_bn(z, kernel, _bn(4, False), relu=True)
        g = torch.ones_like(out)
        results.append((out, h, *torch.autograd.grad(out + h, (z, kernel, weight), g)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_mixed_sum_refuses_an_affine_norm() -> None:
    term = ConvTerm(torch.tensor(1.0), _map(1, 2, 4, 4), torch.randn(2, 2, 1, 1), _bn(2, affine=True))
    with pytest.raises(ValueError, match="affine-free"):
        mixed_sum((1, 2, 4, 4), [term], [])
