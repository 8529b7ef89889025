"""examples/torch: the dense paths train (tiny settings), the fortunes corpus is read as
documented, partitions are groups of whole Transformer blocks, and the sparse paths say clearly
when coppice.torch is missing; the sparse path and the bench run on coppice.torch. Skipped
when torch is not installed (except under make test, which requires it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("COPPICE_REQUIRE_TORCH") == "1":
    import torch  # noqa: F401  (make test: PyTorch must be there)
else:
    torch = pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "torch"
FASHION = Path("/usr/share/datasets/fashion-mnist")
FORTUNES = Path("/usr/share/games/fortunes")


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def lm():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import transformer_lm
        yield transformer_lm
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_cnn_dense_trains(tmp_path):
    out = tmp_path / "cnn.json"
    result = run("cnn.py", "--method", "dense", "--epochs", "1", "--limit-train", "256",
                 "--limit-test", "200", "--threads", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["model"] == "cnn" and len(record["history"]) == 1
    assert 0.0 <= record["test_accuracy"] <= 100.0 and record["final_sparsity"] == 0.0


@pytest.mark.skipif(not FORTUNES.is_dir(), reason="Debian's fortunes not installed")
def test_transformer_dense_trains(tmp_path):
    out = tmp_path / "lm.json"
    result = run("transformer_lm.py", "--method", "dense", "--steps", "3", "--layers", "2",
                 "--d-model", "32", "--heads", "2", "--ffn", "64", "--context", "16",
                 "--batch-size", "4", "--eval-windows", "8", "--threads", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["steps"] == 3 and record["history"][-1]["step"] == 3
    assert record["validation_bpc"] == pytest.approx(record["validation_loss"] / 0.6931471805599453)


@pytest.mark.skipif(not FORTUNES.is_dir(), reason="Debian's fortunes not installed")
def test_fortunes_corpus(lm):
    files = lm.fortune_files(str(FORTUNES))
    assert files == sorted(files) and len(files) == len(set(files))
    assert not any(f.endswith(".dat") for f in files)
    assert not any(os.path.islink(f) for f in files)
    corpus = lm.Corpus(str(FORTUNES))
    total = len(corpus.train) + len(corpus.validation)
    assert len(corpus.validation) == int(0.05 * total)


def test_entries_split_at_percent_lines(lm, tmp_path):
    path = tmp_path / "f"
    path.write_text("one\nline\n%\n\n%\ntwo 100%\n%\n")
    assert lm.read_entries(str(path)) == ["one\nline", "two 100%"]


def test_partitions_are_whole_blocks(lm):
    args = lm.parse_args(["--layers", "4", "--d-model", "16", "--heads", "2", "--ffn", "32"])
    model = lm.CharTransformer(10, 8, args.layers, args.d_model, args.heads, args.ffn, 0.0)
    assert args.partitions == 2
    groups = lm.block_partitions(model, args.partitions)
    assert [sorted({int(n.split(".")[1]) for n in g}) for g in groups] == [[0, 1], [2, 3]]
    assert all(len(g) == 12 for g in groups)  # q, k, v, out, fc1, fc2 of two blocks
    assert [len(g) for g in lm.block_partitions(model, 3)] == [12, 6, 6]


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_cnn_cgap_and_bench_run_on_coppice_torch(tmp_path):
    out = tmp_path / "cgap.json"
    result = run("cnn.py", "--method", "cgap", "--sparsity", "0.9", "--epochs", "2",
                 "--partitions", "2", "--limit-train", "512", "--limit-test", "200",
                 "--json", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["final_sparsity"] == pytest.approx(0.9, abs=1e-4)
    bench = tmp_path / "bench.json"
    result = run("cnn.py", "--bench", "--sparsity", "0.9", "--bench-warmup", "1",
                 "--bench-rounds", "2", "--bench-steps", "1", "--json", str(bench))
    assert result.returncode == 0, result.stderr
    timing = json.loads(bench.read_text())
    assert timing["model"] == "cnn" and timing["torch_dense_ms"] > 0 and timing["coppice_ms"] > 0
    assert timing["speedup"] == pytest.approx(timing["speedup"]) and timing["sparsity"] == 0.9
