"""coppice.torch with issue 16's options: whole residual blocks in one GaP partition, a fresh
optimizer per GaP step, and the options passed through to the sparsifier."""

from __future__ import annotations

import os

import pytest

if os.environ.get("COPPICE_REQUIRE_TORCH") == "1":
    import torch
else:
    torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import coppice.torch as ct  # noqa: E402


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.layer = nn.Sequential(Block(8), Block(8))
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        return self.fc(self.layer(torch.relu(self.stem(x))).flatten(1))


def test_block_of_finds_the_enclosing_block():
    net = Net()
    assert ct._block_of(net, "layer.0.conv1") == "layer.0"
    assert ct._block_of(net, "stem") == ""
    assert ct._block_of(net, "fc") == ""


def test_partitions_keep_blocks_and_fresh_optimizer_per_gap_step():
    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(4, 1, 8, 8)
    y = torch.randint(0, 10, (4,))
    sm = ct.sparsify(net, opt, total_steps=20, method="cgap", sparsity=0.8, partitions=4,
                     gap_step_length=3, restart_optimizer_per_step=True, gap_prune="global",
                     example_input=x)
    groups = sm.sparsifier.partitions()
    for block in ("layer.0", "layer.1"):
        holding = [i for i, g in enumerate(groups) if any(n.startswith(block + ".") for n in g)]
        assert len(holding) == 1, groups
    ends = []
    for step in range(1, 7):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if sm.sparsifier.ended_gap_step():
            ends.append(step)
            assert len(opt.state) == 0  # fresh optimizer state
    assert ends == [3, 6]
    sm.remove()


def test_reference_rigl_updates_replace_the_optimizer_step():
    torch.manual_seed(5)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    handle = ct.sparsify(model, optimizer, method="rigl", sparsity=0.8, total_steps=12,
                         update_interval=3, reference_mask_updates=True,
                         example_input=torch.randn(4, 1, 8, 8))
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    skipped = updated = 0
    for _ in range(9):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        skips = handle.sparsifier.skips_optimizer_step()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        masks = {n: handle.sparsifier.mask(f"{n}") for n in before if n.endswith(".weight")}
        optimizer.step()
        for n, p in model.named_parameters():
            if skips:
                # No gradient step: biases unchanged, and weights kept before and after too.
                kept = torch.ones_like(p, dtype=torch.bool)
                if n in masks:
                    after = torch.from_numpy(handle.sparsifier.mask(n).astype(bool)).reshape(p.shape)
                    kept = torch.from_numpy(masks[n].astype(bool)).reshape(p.shape) & after
                assert torch.equal(p.detach()[kept], before[n][kept]), n
        if skips:
            skipped += 1
        else:
            updated += 1
            assert not torch.equal(model.fc.bias.detach(), before["fc.bias"])
    # Updates every 3 steps until 75% of training (step 9 of 12): steps 3 and 6.
    assert skipped == 2 and updated == 7 and handle.sparsifier.steps == 9
    handle.remove()
    assert "step" not in optimizer.__dict__
