"""coppice.torch.sparsify on PyTorch models: gradients against dense masked torch math, exact
sparsity in the tensors, optimizer-state reset, detached/reallocated parameters, zero_grad
with set_to_none, and bit-exact resume through state_dict."""

from __future__ import annotations

import copy
import io
import os

import pytest

from conftest import exact_zeros

if os.environ.get("COPPICE_REQUIRE_TORCH") == "1":
    import torch  # make test: PyTorch must be there
else:
    torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import coppice.torch as ct  # noqa: E402


class Small(nn.Module):
    """Conv (stride 2, padding 1) + BN + a linear over a sequence-shaped input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.fc1 = nn.Linear(32 * 7 * 7, 96)
        self.fc2 = nn.Linear(96, 10)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        x = torch.relu(self.bn(self.conv1(x)))
        x = torch.relu(self.conv2(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def data(batch=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 14, 14, generator=g), torch.randint(0, 10, (batch,), generator=g)


def weights(model):
    return {f"{n}.weight": m.weight for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_outputs_and_gradients_match_dense_torch_on_masked_weights(sparsity):
    torch.manual_seed(0)
    model = Small()
    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    x, y = data()
    handle = ct.sparsify(model, optimizer, method="static", sparsity=sparsity, total_steps=10, example_input=x)
    # The masks are applied to model's weights; give the reference the same masked weights.
    reference.load_state_dict(model.state_dict())
    out = model(x)
    ref = reference(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    nn.functional.cross_entropy(out, y).backward()
    nn.functional.cross_entropy(ref, y).backward()
    optimizer.step()  # lr 0: weights unchanged; the gradients the optimizer sees are masked
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        expected = q.grad
        if name in weights(model):
            mask = torch.from_numpy(handle.sparsifier.mask(name).astype(bool)).reshape(p.shape)
            expected = q.grad * mask
            assert torch.all(p.grad[~mask] == 0), name
        torch.testing.assert_close(p.grad, expected, rtol=1e-3, atol=1e-4, msg=name)
    # The linear layers ran on Coppice's kernels (the first conv may stay with torch).
    assert any(layer.execution()[0] for layer in handle.layers)


def test_linear_over_a_sequence_input():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
    reference = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    x = torch.randn(4, 20, 32, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    handle = ct.sparsify(model, optimizer, method="static", sparsity=0.8, total_steps=5, example_input=x)
    reference.load_state_dict(model.state_dict())
    out, ref = model(x), reference(xr)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    out.square().sum().backward()
    ref.square().sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-3, atol=1e-4)
    assert handle.sparsifier.sparsity() == pytest.approx(0.8, abs=1e-3)


def train(model, optimizer, steps, seed=0, set_to_none=True):
    x, y = data(seed=seed)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=set_to_none)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("optimizer_kind", ["sgd", "adamw"])
def test_cgap_exact_sparsity_masked_gradients_and_state_reset(optimizer_kind):
    torch.manual_seed(2)
    model = Small()
    optimizer = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
                 if optimizer_kind == "sgd" else torch.optim.AdamW(model.parameters(), lr=1e-3))
    handle = ct.sparsify(model, optimizer, method="cgap", sparsity=0.9, total_steps=20,
                         partitions=2, gap_step_length=4)
    x, y = data()
    resets = 0
    for step in range(20):
        optimizer.zero_grad()  # set_to_none=True: the registered buffers are rebound
        nn.functional.cross_entropy(model(x), y).backward()
        masks = {name: handle.sparsifier.mask(name).astype(bool) for name in weights(model)}
        optimizer.step()
        for name, w in weights(model).items():
            changed = handle.sparsifier.changed_mask(name).astype(bool)
            if changed.any() and step > 0:
                resets += 1
                mask = torch.from_numpy(changed).reshape(w.shape)
                for value in optimizer.state[w].values():
                    if isinstance(value, torch.Tensor) and value.shape == w.shape:
                        assert torch.all(value[mask] == 0), name
            # Gradients were masked with the masks in force during the step.
            kept = torch.from_numpy(masks[name]).reshape(w.shape)
            assert torch.all(w.grad[~kept] == 0), name
    assert resets > 0
    assert handle.phase == "fine-tune"
    for name, w in weights(model).items():
        assert int((w.detach() == 0).sum()) == exact_zeros(w.numel(), 0.9), name
    assert "coppice" in handle.report()


def test_reallocated_parameter_is_reported():
    model = Small()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, _ = data()
    ct.sparsify(model, optimizer, method="static", sparsity=0.5, total_steps=5, example_input=x)
    model.fc1.weight.data = model.fc1.weight.data.clone()  # new memory behind the parameter
    with pytest.raises(RuntimeError, match="fc1.weight was reallocated"):
        model(x)
    model2 = Small()
    optimizer2 = torch.optim.SGD(model2.parameters(), lr=0.01)
    ct.sparsify(model2, optimizer2, method="static", sparsity=0.5, total_steps=5, example_input=x)
    model2.to(torch.float64)
    with pytest.raises(RuntimeError, match="reallocated or converted"):
        model2(x.double())
    with pytest.raises(TypeError, match="CPU float32"):
        ct.sparsify(Small().double(), optimizer, method="static", total_steps=5)


def test_state_dict_resume_is_bit_exact():
    torch.manual_seed(3)
    a = Small()
    b = copy.deepcopy(a)
    oa = torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.9)
    ob = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9)
    options = dict(method="cgap", sparsity=0.8, total_steps=16, partitions=2, gap_step_length=3, seed=5)
    ha = ct.sparsify(a, oa, **options)
    train(a, oa, 7)
    saved = io.BytesIO()
    torch.save({"model": a.state_dict(), "optimizer": oa.state_dict(), "coppice": ha.state_dict()}, saved)
    train(a, oa, 9, seed=1)
    # A fresh process would build the same model and handle, then load the three states.
    hb = ct.sparsify(b, ob, example_input=data()[0], **options)
    saved.seek(0)
    state = torch.load(saved, weights_only=False)
    b.load_state_dict(state["model"])
    ob.load_state_dict(state["optimizer"])
    hb.load_state_dict(state["coppice"])
    train(b, ob, 9, seed=1)
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name
    assert ha.sparsifier.steps == hb.sparsifier.steps == 16


def test_products_on_torch_threads_match_coppice_threads_bit_for_bit():
    torch.manual_seed(4)
    a = Small()
    b = copy.deepcopy(a)
    oa = torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.9)
    ob = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9)
    options = dict(method="static", sparsity=0.9, total_steps=8, threads=2)
    x = data()[0]
    ha = ct.sparsify(a, oa, example_input=x, share_threads=True, **options)
    # PyTorch's Linux wheels run on libgomp, which coppice.torch then lends to the products.
    assert ha.thread_pool == "torch"
    train(a, oa, 4)
    hb = ct.sparsify(b, ob, example_input=x, share_threads=False, **options)
    assert hb.thread_pool == "coppice"
    train(b, ob, 4)
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name
    # The comparison covers the sparse paths: these layers ran on the sparse kernels.
    ran_sparse = {layer.name for layer in ha.layers if layer.execution() == (True, True)}
    assert {"conv2", "fc1"} <= ran_sparse


def test_include_exclude_and_explicit_partitions():
    model = Small()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    handle = ct.sparsify(model, optimizer, method="cgap", sparsity=0.7, total_steps=12,
                         gap_step_length=2, exclude=["conv1"],
                         partitions=[["conv2", "fc1"], ["fc2"]], example_input=data()[0])
    assert [layer.parameter for layer in handle.layers] == ["conv2.weight", "fc1.weight", "fc2.weight"]
    assert handle.sparsity("conv2.weight") == 0 and handle.sparsity("fc1.weight") == 0
    assert handle.sparsity("fc2.weight") > 0.6
    only = ct.sparsify(Small(), torch.optim.SGD(Small().parameters(), lr=0.01), method="static",
                       total_steps=5, include=[nn.Linear])
    assert [layer.parameter for layer in only.layers] == ["fc1.weight", "fc2.weight"]
