"""coppice.torch_blocks: BatchNorm2d → ReLU (→ max-pool) chains on Coppice's fused kernels
against PyTorch's own operations (outputs, every gradient, running statistics, eval mode), which
chains are fused and which models are left alone, and the C entry points' argument checks."""

from __future__ import annotations

import copy
import ctypes
import os

import pytest

if os.environ.get("COPPICE_REQUIRE_TORCH") == "1":
    import torch  # make test: PyTorch must be there
else:
    torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from coppice._capi import capi  # noqa: E402
from coppice._library import last_error  # noqa: E402
from coppice.torch_blocks import fuse_blocks  # noqa: E402

INVALID_ARGUMENT = 1


class Blocks(nn.Module):
    """The chains the pass must recognise: functional pool with a stride, module ReLU and
    module pool with padding, a bare bn → relu, and a bn that is not followed by a ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(12, momentum=0.3)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(12, 16, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.conv4 = nn.Conv2d(16, 16, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(16)  # followed by an add: stays with PyTorch
        self.fc = nn.Linear(16, 5)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = torch.relu(self.bn3(self.conv3(x)))
        x = torch.relu(self.bn4(self.conv4(x)) + x)
        return self.fc(x.mean((2, 3)))


def run(model: nn.Module, x: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
    model.zero_grad()
    out = model(x)
    F.cross_entropy(out, y).backward()
    return out.detach()


def close(a: "torch.Tensor", b: "torch.Tensor", what: str) -> None:
    scale = float(b.abs().max()) + 1e-12
    assert float((a - b).abs().max()) <= 2e-5 * scale, what


def test_chains_match_pytorch_in_training_and_eval():
    torch.manual_seed(0)
    reference = Blocks()
    model = copy.deepcopy(reference)
    fused, note = fuse_blocks(model)
    assert fused == ["bn1", "bn2", "bn3"] and note == ""
    g = torch.Generator().manual_seed(1)
    for step in range(3):  # several steps: the running statistics move
        x = torch.randn(6, 3, 17, 15, generator=g)  # odd sizes: the pools drop a border
        y = torch.randint(0, 5, (6,), generator=g)
        close(run(model, x, y), run(reference, x, y), f"output, step {step}")
        for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
            close(p.grad, q.grad, f"{name}.grad, step {step}")
    for (name, b), (_, r) in zip(model.named_buffers(), reference.named_buffers()):
        close(b.float(), r.float(), name)
    assert model.state_dict().keys() == reference.state_dict().keys()
    model.eval(), reference.eval()
    x = torch.randn(4, 3, 17, 15, generator=g)
    with torch.no_grad():
        close(model(x), reference(x), "eval output")


def test_cumulative_momentum_and_no_input_gradient():
    torch.manual_seed(2)
    seq = nn.Sequential(nn.BatchNorm2d(4, momentum=None), nn.ReLU(), nn.MaxPool2d(2))
    reference = copy.deepcopy(seq)
    assert fuse_blocks(seq)[0] == ["0"]
    for _ in range(3):
        x = torch.randn(5, 4, 8, 8)  # an input without gradient: only dγ and dβ
        seq.zero_grad(), reference.zero_grad()
        seq(x).sum().backward()
        reference(x).sum().backward()
        close(seq[0].weight.grad, reference[0].weight.grad, "dgamma")
        close(seq[0].bias.grad, reference[0].bias.grad, "dbeta")
    close(seq[0].running_var, reference[0].running_var, "running_var (cumulative average)")
    assert int(seq[0].num_batches_tracked) == int(reference[0].num_batches_tracked) == 3


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        x = F.relu(self.bn(x))
        return x * 2 if self.training else x


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        if x.sum() > 0:  # data-dependent control flow
            x = -x
        return F.relu(self.bn(x))


def test_models_it_cannot_fuse_are_left_alone():
    for model, reason in ((Branchy(), "differs between train() and eval()"),
                          (Untraceable(), "cannot trace"),
                          (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), "no BatchNorm2d"),
                          (nn.Sequential(nn.BatchNorm2d(2), nn.Tanh()), "used only by a ReLU"),
                          (nn.Sequential(nn.BatchNorm2d(2, affine=False), nn.ReLU()), "no BatchNorm2d")):
        forward = model.forward
        fused, note = fuse_blocks(model)
        assert fused == [] and reason in note, (type(model).__name__, note)
        assert model.forward == forward


def test_sparsify_fuses_by_default_and_reports_it():
    import coppice.torch as ct

    torch.manual_seed(3)
    model = Blocks()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    example = torch.randn(2, 3, 17, 15)
    handle = ct.sparsify(model, optimizer, method="static", sparsity=0.5, total_steps=4,
                         example_input=example)
    assert handle.fused_blocks == ["bn1", "bn2", "bn3"]
    assert "batch norm + ReLU (+ max-pool) on coppice: bn1, bn2, bn3" in handle.report()
    plain = Blocks()
    handle = ct.sparsify(plain, torch.optim.SGD(plain.parameters(), lr=0.1), method="static",
                         sparsity=0.5, total_steps=4, example_input=example, fuse_blocks=False)
    assert handle.fused_blocks == [] and "on torch: fuse_blocks=False" in handle.report()


def shape(*dims: int):
    return (ctypes.c_int64 * 4)(*dims)


def test_entry_points_check_their_arguments():
    x = torch.randn(2, 3, 4, 4)
    c = torch.empty(3)
    y = torch.empty_like(x)
    p = x.data_ptr()
    ok = capi.coppice_batchnorm2d_forward(shape(2, 3, 4, 4), p, c.data_ptr(), c.data_ptr(), 1e-5,
                                          0.1, None, None, c.data_ptr(), c.data_ptr(), 1,
                                          y.data_ptr())
    assert ok == 0
    bad = [
        capi.coppice_batchnorm2d_forward(shape(2, 0, 4, 4), p, p, p, 1e-5, 0.1, None, None, p, p, 1, p),
        capi.coppice_batchnorm2d_forward(shape(2, 3, 4, 4), p, p, p, 0.0, 0.1, None, None, p, p, 1, p),
        capi.coppice_batchnorm2d_forward(shape(2, 3, 4, 4), p, p, p, 1e-5, 1.5, None, None, p, p, 1, p),
        capi.coppice_batchnorm2d_forward(shape(2, 3, 4, 4), p, p, p, 1e-5, 0.1, p, None, p, p, 1, p),
        capi.coppice_batchnorm2d_forward(shape(2, 3, 4, 4), None, p, p, 1e-5, 0.1, None, None, p, p, 1, p),
        capi.coppice_batchnorm2d_forward(shape(1 << 31, 3, 4, 4), p, p, p, 1e-5, 0.1, None, None, p, p, 1, p),
        capi.coppice_batchnorm2d_forward(shape(1 << 20, 1 << 12, 1 << 10, 1), p, p, p, 1e-5, 0.1,
                                         None, None, p, p, 1, p),
        capi.coppice_batchnorm2d_forward(None, p, p, p, 1e-5, 0.1, None, None, p, p, 1, p),
        capi.coppice_batchnorm2d_backward(shape(2, 3, 4, 4), p, p, p, p, p, None, None, None, p),
        capi.coppice_maxpool2d_forward(shape(2, 3, 4, 4), 0, 1, 0, p, p, p),
        capi.coppice_maxpool2d_forward(shape(2, 3, 4, 4), 2, 0, 0, p, p, p),
        capi.coppice_maxpool2d_forward(shape(2, 3, 4, 4), 2, 2, 2, p, p, p),  # padding > kernel/2
        capi.coppice_maxpool2d_forward(shape(2, 3, 4, 4), 9, 1, 0, p, p, p),  # window > input
        capi.coppice_maxpool2d_forward(shape(2, 3, 4, 4), 2, 2, 0, p, p, None),
    ]
    assert all(status == INVALID_ARGUMENT for status in bad), bad
    # A forged argmax pointing outside its plane is refused before anything is written.
    argmax = torch.full((2, 3, 2, 2), 16, dtype=torch.int32)
    dy = torch.ones(2, 3, 2, 2)
    status = capi.coppice_maxpool2d_backward(shape(2, 3, 4, 4), 2, 2, 0, argmax.data_ptr(),
                                             dy.data_ptr(), y.data_ptr())
    assert status == INVALID_ARGUMENT and "outside" in last_error()


def test_fused_pool_entry_points_check_their_arguments():
    x = torch.randn(2, 3, 5, 4)
    c = torch.ones(3)
    out = torch.empty(2, 3, 2, 2)
    winner = torch.empty(2, 3, 2, 2, dtype=torch.uint8)
    p, cp = x.data_ptr(), c.data_ptr()
    fwd = capi.coppice_batchnorm2d_relu_maxpool2_forward
    assert fwd(shape(2, 3, 5, 4), p, cp, cp, 1e-5, 0.1, None, None, cp, cp, out.data_ptr(),
               winner.data_ptr()) == 0
    assert int(winner.max()) <= 3 and float(out.min()) >= 0.0
    bad = [
        fwd(shape(2, 3, 1, 4), p, cp, cp, 1e-5, 0.1, None, None, cp, cp, p, p),  # no 2×2 window
        fwd(shape(2, 3, 5, 4), p, cp, cp, 0.0, 0.1, None, None, cp, cp, p, p),
        fwd(shape(2, 3, 5, 4), p, cp, cp, 1e-5, 0.1, None, None, cp, cp, p, None),
        fwd(shape(2, 3, 5, 4), p, cp, cp, 1e-5, 0.1, cp, None, cp, cp, p, p),
    ]
    assert all(status == INVALID_ARGUMENT for status in bad), bad
    # A forged winner byte is refused before anything is written.
    dx = torch.full_like(x, 7.0)
    forged = winner.clone()
    forged[1, 2, 1, 1] = 200
    g = torch.ones(2, 3, 2, 2)
    status = capi.coppice_batchnorm2d_relu_maxpool2_backward(
        shape(2, 3, 5, 4), p, cp, cp, cp, out.data_ptr(), forged.data_ptr(), g.data_ptr(),
        dx.data_ptr(), cp, cp)
    assert status == INVALID_ARGUMENT and "winner" in last_error()
    assert bool((dx == 7.0).all())
    with_beta = capi.coppice_batchnorm2d_relu_maxpool2_backward_with_beta
    status = with_beta(shape(2, 3, 5, 4), p, cp, cp, cp, cp, out.data_ptr(), forged.data_ptr(),
                       g.data_ptr(), dx.data_ptr(), cp, cp)
    assert status == INVALID_ARGUMENT and "winner" in last_error()
    status = with_beta(shape(2, 3, 5, 4), p, cp, None, cp, cp, out.data_ptr(), winner.data_ptr(),
                       g.data_ptr(), dx.data_ptr(), cp, cp)
    assert status == INVALID_ARGUMENT and "beta" in last_error()
    assert bool((dx == 7.0).all())


def test_fused_pool_backward_with_beta_matches_the_one_without():
    torch.manual_seed(5)
    x = torch.randn(4, 6, 9, 8)
    gamma, beta = torch.randn(6), torch.randn(6)  # both signs
    mean, invstd = torch.empty(6), torch.empty(6)
    out = torch.empty(4, 6, 4, 4)
    winner = torch.empty(4, 6, 4, 4, dtype=torch.uint8)
    assert capi.coppice_batchnorm2d_relu_maxpool2_forward(
        shape(4, 6, 9, 8), x.data_ptr(), gamma.data_ptr(), beta.data_ptr(), 1e-5, 0.1, None, None,
        mean.data_ptr(), invstd.data_ptr(), out.data_ptr(), winner.data_ptr()) == 0
    dy = torch.randn(4, 6, 4, 4)
    results = []
    for with_beta in (False, True):
        dx, dg, db = torch.empty_like(x), torch.empty(6), torch.empty(6)
        if with_beta:
            status = capi.coppice_batchnorm2d_relu_maxpool2_backward_with_beta(
                shape(4, 6, 9, 8), x.data_ptr(), gamma.data_ptr(), beta.data_ptr(),
                mean.data_ptr(), invstd.data_ptr(), out.data_ptr(), winner.data_ptr(),
                dy.data_ptr(), dx.data_ptr(), dg.data_ptr(), db.data_ptr())
        else:
            status = capi.coppice_batchnorm2d_relu_maxpool2_backward(
                shape(4, 6, 9, 8), x.data_ptr(), gamma.data_ptr(), mean.data_ptr(),
                invstd.data_ptr(), out.data_ptr(), winner.data_ptr(), dy.data_ptr(),
                dx.data_ptr(), dg.data_ptr(), db.data_ptr())
        assert status == 0, last_error()
        results.append((dx, dg, db))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (a - b).abs().max()


def test_relu_backward_recomputing_the_mask_equals_the_one_reading_the_output():
    torch.manual_seed(6)
    x = torch.randn(3, 5, 7, 6)
    gamma, beta = torch.randn(5), torch.randn(5)
    mean, invstd, y = torch.empty(5), torch.empty(5), torch.empty_like(x)
    assert capi.coppice_batchnorm2d_forward(
        shape(3, 5, 7, 6), x.data_ptr(), gamma.data_ptr(), beta.data_ptr(), 1e-5, 0.1, None, None,
        mean.data_ptr(), invstd.data_ptr(), 1, y.data_ptr()) == 0
    dy = torch.randn_like(x)
    grads = []
    for recompute in (False, True):
        dx, dg, db = torch.empty_like(x), torch.empty(5), torch.empty(5)
        if recompute:
            status = capi.coppice_batchnorm2d_relu_backward(
                shape(3, 5, 7, 6), x.data_ptr(), gamma.data_ptr(), beta.data_ptr(),
                mean.data_ptr(), invstd.data_ptr(), dy.data_ptr(), dx.data_ptr(), dg.data_ptr(),
                db.data_ptr())
        else:
            status = capi.coppice_batchnorm2d_backward(
                shape(3, 5, 7, 6), x.data_ptr(), gamma.data_ptr(), mean.data_ptr(),
                invstd.data_ptr(), dy.data_ptr(), y.data_ptr(), dx.data_ptr(), dg.data_ptr(),
                db.data_ptr())
        assert status == 0, last_error()
        grads.append((dx, dg, db))
    for a, b in zip(*grads):
        assert torch.equal(a, b)
    status = capi.coppice_batchnorm2d_relu_backward(
        shape(3, 5, 7, 6), x.data_ptr(), gamma.data_ptr(), None, mean.data_ptr(),
        invstd.data_ptr(), dy.data_ptr(), None, dg.data_ptr(), db.data_ptr())
    assert status == INVALID_ARGUMENT and "beta" in last_error()
