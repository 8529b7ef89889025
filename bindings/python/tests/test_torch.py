"""CPU float32 torch tensors by pointer (skipped when torch is not installed)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import coppice
from conftest import exact_zeros

if os.environ.get("COPPICE_REQUIRE_TORCH") == "1":
    import torch  # make test: PyTorch must be there
else:
    torch = pytest.importorskip("torch")


def test_sparsifier_masks_torch_parameters_in_place():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    s = coppice.Sparsifier(method="cgap", sparsity=0.8, total_steps=30, partitions=2, gap_step_length=5)
    weights = {name: p for name, p in model.named_parameters() if p.dim() > 1}
    for name, p in weights.items():
        p.grad = torch.zeros_like(p)
        s.add_parameter(name, p.data, p.grad)
    s.start()
    x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))
    for _ in range(30):
        optimizer.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        s.mask_gradients()
        optimizer.step()
        if s.step():
            for name, p in weights.items():
                changed = torch.from_numpy(s.changed_mask(name).astype(bool))
                optimizer.state[p]["momentum_buffer"][changed] = 0
    for name, p in weights.items():
        mask = s.mask(name)
        assert int((mask == 0).sum()) == exact_zeros(p.numel(), 0.8)
        assert torch.all(p.detach()[torch.from_numpy(mask == 0)] == 0)


def test_sparse_matrix_with_tensors():
    w = torch.randn(8, 6)
    mask = (torch.rand(8, 6) < 0.5).numpy()
    m = coppice.SparseMatrix(w, mask)
    x = torch.randn(6, 3)
    out = torch.empty(8, 3)
    m.spmm(x, out=out)
    expected = (w * torch.from_numpy(mask)) @ x
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_torch_tensors_that_cannot_be_passed():
    s = coppice.Sparsifier(method="static", total_steps=10)
    with pytest.raises(TypeError):
        s.add_parameter("double", torch.zeros(4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="contiguous"):
        s.add_parameter("view", torch.zeros(4, 6).t())
    with pytest.raises(ValueError, match="shape"):
        s.add_parameter("w", torch.zeros(4, 4), torch.zeros(16))
