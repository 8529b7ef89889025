"""Every front end reports the same defaults: the C ABI's _init functions, the Python
Sparsifier, the C++ wrapper and the `coppice` command all take them from the engine's one
configuration (SparsityConfig.defaults and TrainingConfig)."""

from __future__ import annotations

import ctypes
import inspect
import os
import pathlib
import re
import subprocess

import pytest

import coppice
from coppice._capi import SparsifierConfig, TrainConfig, capi
from coppice.sparsifier import LIBRARY_DEFAULT

ROOT = pathlib.Path(__file__).resolve().parents[3]


def c_defaults() -> dict:
    """The C ABI's defaults, sparsifier and training, by option name."""
    s = SparsifierConfig()
    capi.coppice_sparsifier_config_init(ctypes.byref(s))
    t = TrainConfig()
    capi.coppice_train_config_init(ctypes.byref(t))
    return {
        "method": (s.method or b"").decode(),
        "sparsity": s.sparsity,
        "partitions": s.partitions,
        "partition_balance": (s.partition_balance or b"").decode(),
        "rounds": s.rounds,
        "update_interval": s.update_interval,
        "drop_fraction": s.drop_fraction,
        "erk_power": s.erk_power,
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "learning_rate": t.learning_rate,
        "momentum": t.momentum,
        "weight_decay": t.weight_decay,
        "seed": t.seed,
        "train_rounds": t.sparsity.rounds,
        "train_partitions": t.sparsity.partitions,
        "train_sparsity": t.sparsity.sparsity,
        "gap_prune": (s.gap_prune or b"").decode(),
        "pgap_merge": (s.pgap_merge or b"").decode(),
        "global_magnitude": s.global_magnitude,
        "reset_optimizer_state": s.reset_optimizer_state,
        "restart_optimizer_per_step": s.restart_optimizer_per_step,
        "restart_lr_per_step": s.restart_lr_per_step,
        "restart_warmup_per_step": s.restart_warmup_per_step,
        "initial_sparsity": s.initial_sparsity,
        "pruning_begin_step": s.pruning_begin_step,
        "pruning_end_step": s.pruning_end_step,
        "pruning_frequency": s.pruning_frequency,
        "drop_fraction_decay": s.drop_fraction_decay,
        "update_end_fraction": s.update_end_fraction,
        "reference_mask_updates": s.reference_mask_updates,
        "warmup_epochs": s.warmup_epochs,
        "train_warmup_epochs": t.sparsity.warmup_epochs,
        "train_gap_prune": (t.sparsity.gap_prune or b"").decode(),
    }


def test_c_defaults_are_the_documented_ones():
    d = c_defaults()
    assert d["method"] == "cgap" and d["partition_balance"] == "flops"
    assert d["rounds"] == 1 and d["partitions"] == 4
    assert d["sparsity"] == pytest.approx(0.9)
    # The training config's sparse-training part has the sparsifier's defaults.
    assert (d["train_rounds"], d["train_partitions"]) == (d["rounds"], d["partitions"])
    assert d["train_sparsity"] == pytest.approx(d["sparsity"])
    # Issue 16's options default to the behaviour before them.
    assert d["gap_prune"] == d["train_gap_prune"] == "layer"
    assert d["pgap_merge"] == "average"
    assert (d["global_magnitude"], d["restart_optimizer_per_step"], d["restart_lr_per_step"],
            d["restart_warmup_per_step"], d["reference_mask_updates"]) == (0, 0, 0, 0, 0)
    assert d["reset_optimizer_state"] == 1
    assert (d["initial_sparsity"], d["pruning_begin_step"], d["pruning_end_step"]) == (0, -1, -1)
    assert d["pruning_frequency"] == 100 and d["update_end_fraction"] == pytest.approx(0.75)
    assert d["drop_fraction_decay"] is None
    assert d["warmup_epochs"] == d["train_warmup_epochs"] == 0  # the engine's warm-up (coppice_train)


def test_python_sparsifier_takes_the_library_defaults():
    parameters = inspect.signature(coppice.Sparsifier.__init__).parameters
    for name, parameter in parameters.items():
        if name in ("self", "total_steps"):
            continue
        if name in ("steps_per_epoch", "distribution"):  # None: derived by the library
            assert parameter.default is None, name
        else:
            assert parameter.default is LIBRARY_DEFAULT, name
    s = coppice.Sparsifier(total_steps=100)
    d = c_defaults()
    assert s.method == d["method"]
    assert s.target_sparsity == pytest.approx(d["sparsity"])
    s.close()


CPP_PROGRAM = r"""
#include "coppice.hpp"
#include <cstdio>
int main() {
  coppice::SparsifierConfig s;
  coppice::TrainConfig t;
  std::printf("sparsity %.17g\npartitions %d\nrounds %d\nupdate_interval %lld\n"
              "drop_fraction %.17g\nerk_power %.17g\nepochs %d\nbatch_size %d\n"
              "learning_rate %.9g\nmomentum %.9g\nweight_decay %.9g\nseed %llu\n"
              "train_rounds %d\npruning_frequency %lld\nupdate_end_fraction %.17g\n"
              "initial_sparsity %.17g\npruning_begin_step %lld\npruning_end_step %lld\n"
              "global_magnitude %d\nreset_optimizer_state %d\nrestart_optimizer_per_step %d\n"
              "restart_lr_per_step %d\nrestart_warmup_per_step %d\nreference_mask_updates %d\n",
              s.sparsity(), s.partitions(), s.rounds(), (long long)s.update_interval(),
              s.drop_fraction(), s.erk_power(), t.epochs(), t.batch_size(), t.learning_rate(),
              t.momentum(), t.weight_decay(), (unsigned long long)t.seed(),
              t.sparsity().rounds(), (long long)s.pruning_frequency(), s.update_end_fraction(),
              s.initial_sparsity(), (long long)s.pruning_begin_step(),
              (long long)s.pruning_end_step(), (int)s.global_magnitude(),
              (int)s.reset_optimizer_state(), (int)s.restart_optimizer_per_step(),
              (int)s.restart_lr_per_step(), (int)s.restart_warmup_per_step(),
              (int)s.reference_mask_updates());
  if (s.gap_prune() != "layer" || s.pgap_merge() != "average" || s.drop_fraction_decay()) return 1;
  return 0;
}
"""


def test_cpp_wrapper_reports_the_same_defaults(tmp_path):
    source = tmp_path / "defaults.cpp"
    source.write_text(CPP_PROGRAM)
    program = tmp_path / "defaults"
    library = pathlib.Path(coppice.library_path).resolve()
    subprocess.run(
        [os.environ.get("CXX", "c++"), "-std=c++17", f"-I{ROOT / 'include'}",
         f"-I{ROOT / 'bindings' / 'cpp'}", str(source), str(library),
         f"-Wl,-rpath,{library.parent}", "-o", str(program)],
        check=True)
    out = subprocess.run([str(program)], check=True, capture_output=True, text=True).stdout
    cpp = {k: float(v) for k, v in (line.split() for line in out.splitlines())}
    d = c_defaults()
    for name, value in cpp.items():
        assert value == pytest.approx(float(d[name]), rel=1e-6), name


def cli_help_defaults(command: str) -> dict:
    """`--option <value> ... (default: X)` pairs of `coppice <command> --help`."""
    cli = ROOT / ".build" / "release" / "coppice"
    assert cli.exists(), f"{cli} is missing: run `make build` first"
    text = subprocess.run(
        [str(cli), command, "--help"], check=True, capture_output=True, text=True).stdout
    defaults = {}
    for chunk in re.sub(r"\s+", " ", text).split(" --")[1:]:
        found = re.search(r"default: ([^)]+)\)", chunk)
        if found:
            defaults[chunk.split(" ")[0]] = found.group(1)
    return defaults


@pytest.mark.parametrize("command", ["train", "compare"])
def test_cli_reports_the_same_defaults(command):
    cli = cli_help_defaults(command)
    d = c_defaults()
    expected = {
        "sparsity": d["sparsity"], "partitions": d["partitions"],
        "partition-balance": d["partition_balance"], "rounds": d["rounds"],
        "update-interval": d["update_interval"], "drop-fraction": d["drop_fraction"],
        "erk-power": d["erk_power"], "epochs": d["epochs"], "batch-size": d["batch_size"],
        "lr": d["learning_rate"], "momentum": d["momentum"],
        "weight-decay": d["weight_decay"], "seed": d["seed"],
        "gap-prune": d["gap_prune"], "pgap-merge": d["pgap_merge"],
        "update-end-fraction": d["update_end_fraction"],
        "initial-sparsity": d["initial_sparsity"], "pruning-frequency": d["pruning_frequency"],
    }
    for option, value in expected.items():
        assert option in cli, f"coppice {command} --help shows no default for --{option}"
        if isinstance(value, str):
            assert cli[option] == value, option
        else:
            assert float(cli[option]) == pytest.approx(float(value), rel=1e-6), option
