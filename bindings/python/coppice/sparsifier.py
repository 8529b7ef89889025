"""The sparsifier: GaP and the sparse-training baselines on weights the host owns."""

from __future__ import annotations

import ctypes
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ._arrays import FloatBuffer, as_float_buffer, c_float_value, c_int_value, c_string
from ._capi import SparsifierConfig, SparsifierEvent, capi
from ._handle import Handle
from ._library import check

__all__ = ["Sparsifier", "SparsityEvent", "METHODS", "CONFIG_FIELDS", "LIBRARY_DEFAULT"]

#: The sparse-training methods of coppice_sparsifier_config.method.
METHODS = ("dense", "static", "oneshot", "gmp", "set", "rigl", "cgap", "pgap")

PathLike = Union[str, bytes, "os.PathLike[str]"]


_STRING_FIELDS = ("method", "distribution", "partition_balance", "gap_prune", "pgap_merge",
                  "drop_fraction_decay")
_FLOAT_FIELDS = ("sparsity", "erk_power", "drop_fraction", "initial_sparsity",
                 "update_end_fraction")
_BOOL_FIELDS = ("keep_first_dense", "keep_last_dense", "global_magnitude",
                "reset_optimizer_state", "restart_optimizer_per_step", "restart_lr_per_step",
                "restart_warmup_per_step", "reference_mask_updates")
_INT_FIELDS = {  # field: bits of its C type
    "total_steps": 64,
    "steps_per_epoch": 64,
    "partitions": 32,
    "gap_step_length": 64,
    "rounds": 32,
    "update_interval": 64,
    "prune_step": 64,
    "pruning_begin_step": 64,
    "pruning_end_step": 64,
    "pruning_frequency": 64,
}
#: The keyword arguments that map onto coppice_sparsifier_config fields.
CONFIG_FIELDS = _STRING_FIELDS + _FLOAT_FIELDS + _BOOL_FIELDS + tuple(_INT_FIELDS) + ("seed",)


class _LibraryDefault:
    """An option left at the library's default (coppice_sparsifier_config_init, which reports
    the engine's one set of defaults, the same as the CLI's and C++'s)."""

    def __repr__(self) -> str:
        return "<library default>"


#: The default of every Sparsifier option: keep what coppice_sparsifier_config_init set.
LIBRARY_DEFAULT: Any = _LibraryDefault()


def fill_sparsifier_config(config: SparsifierConfig, keep: List[Any], **values: Any) -> None:
    """Writes checked Python values into a config initialised by the library; None or
    LIBRARY_DEFAULT keeps the library's default. Encoded strings are appended to `keep`, which
    the caller must hold until the C call that reads the config has returned."""
    for field, value in values.items():
        if value is None or value is LIBRARY_DEFAULT:
            continue
        if field in _STRING_FIELDS:
            encoded = c_string(value, field)
            keep.append(encoded)
            setattr(config, field, encoded)
        elif field in _FLOAT_FIELDS:
            setattr(config, field, c_float_value(value, field))
        elif field in _BOOL_FIELDS:
            setattr(config, field, 1 if value else 0)
        elif field in _INT_FIELDS:
            setattr(config, field, c_int_value(value, field, _INT_FIELDS[field]))
        elif field == "seed":
            config.seed = c_int_value(value, "seed", 64, unsigned=True)
        else:
            raise TypeError(f"unknown sparsifier option {field!r}")


class SparsityEvent(NamedTuple):
    """A structured sparsifier event (coppice_sparsifier_event): `kind` is its name ("start",
    "prune", "grow", "final_prune", "mask_update", "magnitude_prune", "worker_begin",
    "round_merged", "frozen"), `code` its COPPICE_EVENT_* number, `partition` None when
    none, `layers` the names concerned and `sparsity` theirs right after the event."""

    kind: str
    code: int
    step: int
    partition: Optional[int]
    layers: Tuple[str, ...]
    sparsity: float


class _Parameter:
    """A registered weight buffer and its optional gradient buffer (kept alive here, because
    the library holds their addresses)."""

    __slots__ = ("name", "weights", "gradients")

    def __init__(self, name: str, weights: FloatBuffer, gradients: Optional[FloatBuffer]):
        self.name = name
        self.weights = weights
        self.gradients = gradients


class Sparsifier(Handle):
    """Sparse training on weights the host owns (coppice_sparsifier).

    Register every prunable weight (and its gradient buffer) with `add_parameter`, call
    `start()`, then in the training loop::

        loss.backward()                        # host computes gradients
        sparsifier.mask_gradients()            # zero gradients of pruned weights
        optimizer.step()                       # host updates weights
        if sparsifier.step():                  # apply masks, grow/prune on schedule
            for name in names:                 # masks changed: reset optimizer moments there
                velocity[name][sparsifier.changed_mask(name).astype(bool)] = 0

    The arguments mirror coppice_sparsifier_config; those not given keep the library's
    defaults (coppice_sparsifier_config_init: method "cgap", sparsity 0.9, 4 partitions
    balanced by "flops", 1 round, update_interval 100, drop_fraction 0.3, erk_power 1 — the
    same defaults as the `coppice` command and the C++ wrapper). `total_steps`
    (optimizer steps the host will run) is required. `steps_per_epoch=None` means total_steps;
    `distribution=None` the method's default ("erk" for RigL, "uniform" otherwise);
    `gap_step_length=0` lets the GaP rounds fill 75% of training; `prune_step=-1` prunes
    oneshot at half of training. Bad values raise CoppiceError(COPPICE_INVALID_ARGUMENT).

    GaP as the paper's code runs it (defaults keep the plain behaviour): `gap_prune="global"`
    (non-uniform GaP), `restart_optimizer_per_step` / `restart_lr_per_step` /
    `restart_warmup_per_step` (the host restarts where `ended_gap_step()` says so; coppice.torch
    clears the optimizer's state itself), `pgap_merge` (engine P-GaP). SET/RigL:
    `reference_mask_updates` (skip the optimizer step where `skips_optimizer_step()` says so),
    `drop_fraction_decay`, `update_end_fraction`; GMP: `initial_sparsity`,
    `pruning_begin_step`, `pruning_end_step` (-1: 25% / 75% of training), `pruning_frequency`;
    oneshot/GMP: `global_magnitude`. Per-layer tables, blocks and explicit partitions:
    `set_layer_sparsity`, `set_block`, `set_partitions` / `set_partition_list` before start().

    Registered arrays are referenced by this object until close(): the library writes into
    them in place (masking), so they must not be resized or reallocated.
    Not thread-safe: use one sparsifier from one thread at a time.
    """

    def __init__(
        self,
        *,
        method: str = LIBRARY_DEFAULT,
        sparsity: float = LIBRARY_DEFAULT,
        total_steps: int,
        steps_per_epoch: Optional[int] = None,
        distribution: Optional[str] = None,
        partitions: int = LIBRARY_DEFAULT,
        partition_balance: str = LIBRARY_DEFAULT,
        gap_step_length: int = LIBRARY_DEFAULT,
        rounds: int = LIBRARY_DEFAULT,
        update_interval: int = LIBRARY_DEFAULT,
        drop_fraction: float = LIBRARY_DEFAULT,
        prune_step: int = LIBRARY_DEFAULT,
        keep_first_dense: bool = LIBRARY_DEFAULT,
        keep_last_dense: bool = LIBRARY_DEFAULT,
        erk_power: float = LIBRARY_DEFAULT,
        seed: int = LIBRARY_DEFAULT,
        gap_prune: str = LIBRARY_DEFAULT,
        global_magnitude: bool = LIBRARY_DEFAULT,
        reset_optimizer_state: bool = LIBRARY_DEFAULT,
        restart_optimizer_per_step: bool = LIBRARY_DEFAULT,
        restart_lr_per_step: bool = LIBRARY_DEFAULT,
        restart_warmup_per_step: bool = LIBRARY_DEFAULT,
        pgap_merge: str = LIBRARY_DEFAULT,
        initial_sparsity: float = LIBRARY_DEFAULT,
        pruning_begin_step: int = LIBRARY_DEFAULT,
        pruning_end_step: int = LIBRARY_DEFAULT,
        pruning_frequency: int = LIBRARY_DEFAULT,
        drop_fraction_decay: str = LIBRARY_DEFAULT,
        update_end_fraction: float = LIBRARY_DEFAULT,
        reference_mask_updates: bool = LIBRARY_DEFAULT,
    ) -> None:
        self._parameters: Dict[str, _Parameter] = {}
        required = {"method": method, "sparsity": sparsity, "total_steps": total_steps,
                    "partitions": partitions, "partition_balance": partition_balance,
                    "gap_step_length": gap_step_length, "rounds": rounds,
                    "update_interval": update_interval, "drop_fraction": drop_fraction,
                    "prune_step": prune_step, "erk_power": erk_power, "seed": seed}
        for field, value in required.items():
            if value is None:
                raise TypeError(f"{field} must not be None")
        config = SparsifierConfig()
        capi.coppice_sparsifier_config_init(ctypes.byref(config))
        keep: List[Any] = []
        fill_sparsifier_config(
            config,
            keep,
            method=method,
            sparsity=sparsity,
            distribution=distribution,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            partitions=partitions,
            partition_balance=partition_balance,
            gap_step_length=gap_step_length,
            rounds=rounds,
            update_interval=update_interval,
            drop_fraction=drop_fraction,
            prune_step=prune_step,
            keep_first_dense=keep_first_dense,
            keep_last_dense=keep_last_dense,
            erk_power=erk_power,
            seed=seed,
            gap_prune=gap_prune,
            global_magnitude=global_magnitude,
            reset_optimizer_state=reset_optimizer_state,
            restart_optimizer_per_step=restart_optimizer_per_step,
            restart_lr_per_step=restart_lr_per_step,
            restart_warmup_per_step=restart_warmup_per_step,
            pgap_merge=pgap_merge,
            initial_sparsity=initial_sparsity,
            pruning_begin_step=pruning_begin_step,
            pruning_end_step=pruning_end_step,
            pruning_frequency=pruning_frequency,
            drop_fraction_decay=drop_fraction_decay,
            update_end_fraction=update_end_fraction,
            reference_mask_updates=reference_mask_updates,
        )
        handle = ctypes.c_void_p()
        check(capi.coppice_sparsifier_create(ctypes.byref(config), ctypes.byref(handle)))
        self._adopt(handle, capi.coppice_sparsifier_destroy)
        self.method = config.method.decode()  # _init and fill leave it set
        self.target_sparsity = float(config.sparsity)

    def _release(self) -> None:
        self._parameters = {}

    # ---------------------------------------------------------------- registration

    def add_parameter(
        self,
        name: str,
        weights: Any,
        grad: Any = None,
        flops_per_weight: float = 0,
    ) -> None:
        """Registers a weight buffer under a unique `name` (before start()).

        `weights`: writable C-contiguous float32 array (numpy, `__array_interface__`, buffer
        protocol, or a CPU torch tensor) of 1..8 dimensions, masked in place.
        `grad`: its gradient buffer (same shape), needed by mask_gradients and RigL.
        `flops_per_weight` (<= 0: 2) weights FLOP-balanced GaP partitions.
        """
        handle = self._live()
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        encoded = c_string(name, "name")
        w = as_float_buffer(weights, "weights", writable=True)
        g = None
        if grad is not None:
            g = as_float_buffer(grad, "grad", writable=True)
            if g.shape != w.shape:
                raise ValueError(f"grad has shape {g.shape} but weights have shape {w.shape}")
        flops = c_float_value(flops_per_weight, "flops_per_weight")
        shape = (ctypes.c_int64 * max(1, w.ndim))(*w.shape)
        check(
            capi.coppice_sparsifier_add_parameter(
                handle, encoded, w.address, shape, w.ndim, g.address if g else None, flops
            )
        )
        self._parameters[name] = _Parameter(name, w, g)

    def set_partitions(self, partitions: Sequence[Sequence[str]]) -> None:
        """Explicit GaP partitions (before start): lists of registered parameter names, e.g.
        the layers of whole Transformer blocks; every parameter in exactly one."""
        handle = self._live()
        for index, names in enumerate(partitions):
            for name in names:
                check(capi.coppice_sparsifier_set_partition(handle, c_string(name, "name"), index))

    def set_partition_list(self, text: str) -> None:
        """Explicit GaP partitions as text: "a,b;c" (',' within, ';' between partitions)."""
        check(capi.coppice_sparsifier_set_partition_list(self._live(), c_string(text, "partitions")))

    def set_layer_sparsity(self, name: str, sparsity: float) -> None:
        """Per-layer sparsity table entry (before start()); once any is set, every parameter
        needs one and the table replaces the distribution."""
        check(capi.coppice_sparsifier_set_layer_sparsity(
            self._live(), c_string(name, "name"), c_float_value(sparsity, "sparsity")))

    def set_layer_sparsities(self, table: Dict[str, float]) -> None:
        """set_layer_sparsity for every entry of `table`."""
        for name, value in table.items():
            self.set_layer_sparsity(name, value)

    def set_block(self, name: str, block: str) -> None:
        """Puts parameter `name` into `block` (balanced GaP partitions never split a block)."""
        check(capi.coppice_sparsifier_set_block(
            self._live(), c_string(name, "name"), c_string(block, "block")))

    def partition_count(self) -> int:
        """GaP partitions as they took effect (0 for other methods); after start()."""
        out = ctypes.c_int()
        check(capi.coppice_sparsifier_partition_count(self._live(), ctypes.byref(out)))
        return out.value

    def partition_of(self, name: str) -> Optional[int]:
        """The GaP partition of parameter `name`, None when it is in none."""
        out = ctypes.c_int()
        check(capi.coppice_sparsifier_partition_of(
            self._live(), c_string(name, "name"), ctypes.byref(out)))
        return None if out.value < 0 else out.value

    def partitions(self) -> List[List[str]]:
        """The GaP partitions as lists of parameter names (registration order)."""
        groups: List[List[str]] = [[] for _ in range(self.partition_count())]
        for name in self.names:
            p = self.partition_of(name)
            if p is not None:
                groups[p].append(name)
        return groups

    def _flag(self, function: Any) -> bool:
        out = ctypes.c_int()
        check(function(self._live(), ctypes.byref(out)))
        return bool(out.value)

    def masks_frozen(self) -> bool:
        """Whether masks can no longer change (fine-tune)."""
        return self._flag(capi.coppice_sparsifier_masks_frozen)

    def skips_optimizer_step(self) -> bool:
        """Whether the host should skip its optimizer step for the coming step (SET/RigL
        update steps with reference_mask_updates); call mask_gradients and step as usual."""
        return self._flag(capi.coppice_sparsifier_skips_optimizer_step)

    def ended_gap_step(self) -> bool:
        """Whether the last step() ended a GaP step: where to restart optimizer state or the
        learning-rate schedule (restart_optimizer_per_step, restart_lr_per_step)."""
        return self._flag(capi.coppice_sparsifier_ended_gap_step)

    def next_event(self) -> Optional[SparsityEvent]:
        """The next structured event not yet read, or None."""
        event = SparsifierEvent()
        event.struct_size = ctypes.sizeof(SparsifierEvent)
        has = ctypes.c_int()
        check(capi.coppice_sparsifier_next_event(self._live(), ctypes.byref(event), ctypes.byref(has)))
        if not has.value:
            return None
        layers = (event.layers or b"").decode()
        return SparsityEvent(
            kind=(event.kind_name or b"").decode(), code=int(event.kind), step=int(event.step),
            partition=None if event.partition < 0 else int(event.partition),
            layers=tuple(layers.split(",")) if layers else (), sparsity=float(event.sparsity))

    def events(self) -> List[SparsityEvent]:
        """Every structured event not yet read, in order."""
        out: List[SparsityEvent] = []
        while True:
            e = self.next_event()
            if e is None:
                return out
            out.append(e)

    def shape(self, name: str) -> Tuple[int, ...]:
        """The registered shape of parameter `name` (KeyError when unknown)."""
        return tuple(self._parameters[name].weights.shape)

    def parameter_info(self, index: int) -> Tuple[str, int]:
        """(name, element count) of the index-th registered parameter (CoppiceError
        COPPICE_NOT_FOUND when out of range)."""
        handle = self._live()
        index = c_int_value(index, "index")
        name = ctypes.c_char_p()
        count = ctypes.c_int64()
        check(capi.coppice_sparsifier_parameter_info(handle, index, ctypes.byref(name), ctypes.byref(count)))
        return (name.value or b"").decode("utf-8", "replace"), count.value

    @property
    def names(self) -> List[str]:
        """Registered parameter names, in registration order (as the library reports them)."""
        return [self.parameter_info(i)[0] for i in range(self.parameter_count)]

    @property
    def parameter_count(self) -> int:
        """Number of registered parameters."""
        out = ctypes.c_int()
        check(capi.coppice_sparsifier_parameter_count(self._live(), ctypes.byref(out)))
        return out.value

    # ---------------------------------------------------------------- the training loop

    def start(self) -> None:
        """Resolves per-parameter sparsities, builds the schedule and applies the initial masks
        (masked weights are set to zero in the host's buffers)."""
        check(capi.coppice_sparsifier_start(self._live()))

    def mask_gradients(self) -> None:
        """After backward: zeroes gradients at masked positions."""
        check(capi.coppice_sparsifier_mask_gradients(self._live()))

    def step(self) -> bool:
        """After the optimizer step: re-applies masks, grows/prunes on schedule. Returns True
        when a mask changed (see changed_mask)."""
        changed = ctypes.c_int()
        check(capi.coppice_sparsifier_step(self._live(), ctypes.byref(changed)))
        return bool(changed.value)

    @property
    def needs_dense_gradients(self) -> bool:
        """Whether the coming step needs full dense gradients (RigL update steps)."""
        out = ctypes.c_int()
        check(capi.coppice_sparsifier_needs_dense_gradients(self._live(), ctypes.byref(out)))
        return bool(out.value)

    # ---------------------------------------------------------------- masks and reports

    def _mask_call(self, function: Any, name: str) -> np.ndarray:
        handle = self._live()
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        encoded = c_string(name, "name")
        parameter = self._parameters.get(name)
        shape = parameter.weights.shape if parameter else (1,)
        out = np.zeros(shape, dtype=np.uint8)
        check(function(handle, encoded, out.ctypes.data, out.size))
        if parameter is None:  # the library should have reported NOT_FOUND
            raise KeyError(f"no parameter named {name!r}")
        return out

    def mask(self, name: str) -> np.ndarray:
        """The mask of parameter `name` (uint8, its shape; 1 = kept)."""
        return self._mask_call(capi.coppice_sparsifier_get_mask, name)

    def changed_mask(self, name: str) -> np.ndarray:
        """Where the last start()/step() changed `name`'s mask (uint8, 1 = grown or pruned):
        the positions where the host should zero its optimizer state."""
        return self._mask_call(capi.coppice_sparsifier_changed_mask, name)

    def sparsity(self, name: Optional[str] = None) -> float:
        """Sparsity of parameter `name`, or over all parameters when name is None."""
        handle = self._live()
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        out = ctypes.c_double()
        check(
            capi.coppice_sparsifier_sparsity(
                handle, c_string(name, "name", allow_none=True), ctypes.byref(out)
            )
        )
        return out.value

    def sparsities(self) -> Dict[str, float]:
        """Sparsity of every registered parameter, by name."""
        return {name: self.sparsity(name) for name in self.names}

    @property
    def phase(self) -> str:
        """What the schedule is doing, e.g. "C-GaP round 1/2, partition 0 dense"."""
        text = capi.coppice_sparsifier_phase(self._live())
        return text.decode("utf-8", "replace") if text else ""

    @property
    def steps(self) -> int:
        """Completed optimizer steps."""
        out = ctypes.c_int64()
        check(capi.coppice_sparsifier_steps(self._live(), ctypes.byref(out)))
        return out.value

    # ---------------------------------------------------------------- P-GaP run by the host

    @property
    def pgap_status(self) -> Tuple[int, int, int]:
        """(workers, rounds completed, rounds) of a "pgap" sparsifier."""
        workers, done, rounds = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        check(
            capi.coppice_sparsifier_pgap_status(
                self._live(), ctypes.byref(workers), ctypes.byref(done), ctypes.byref(rounds)
            )
        )
        return workers.value, done.value, rounds.value

    def begin_worker(self, worker: int) -> None:
        """P-GaP: install worker `worker`'s masks (its partition dense). Put the weights back
        to the round's start first."""
        check(capi.coppice_sparsifier_pgap_begin_worker(self._live(), c_int_value(worker, "worker")))

    def partition_size(self, worker: int) -> int:
        """Number of weights in partition `worker` (its parameters, registration order)."""
        out = ctypes.c_int64()
        check(
            capi.coppice_sparsifier_pgap_partition_size(
                self._live(), c_int_value(worker, "worker"), ctypes.byref(out)
            )
        )
        return out.value

    def export_partition(self, worker: int) -> Tuple[np.ndarray, np.ndarray]:
        """P-GaP: partition `worker`'s current weights and masks as flat float32 / uint8 arrays
        (its parameters concatenated in registration order), to send to the other workers."""
        n = self.partition_size(worker)
        weights = np.zeros(n, dtype=np.float32)
        masks = np.zeros(n, dtype=np.uint8)
        check(
            capi.coppice_sparsifier_pgap_export_partition(
                self._live(), worker, weights.ctypes.data, masks.ctypes.data, n
            )
        )
        return weights, masks

    def import_partition(self, worker: int, weights: Any) -> None:
        """P-GaP: the weights worker `worker` exported, for this round's merge."""
        values = np.ascontiguousarray(weights, dtype=np.float32).reshape(-1)
        check(
            capi.coppice_sparsifier_pgap_import_partition(
                self._live(), c_int_value(worker, "worker"), values.ctypes.data, values.size
            )
        )

    def finish_round(self) -> None:
        """P-GaP: assemble the round from the imported partitions, prune to target and write
        the result into the host's weight buffers."""
        check(capi.coppice_sparsifier_pgap_finish_round(self._live()))

    # ---------------------------------------------------------------- checkpoints

    def save(self, path: PathLike) -> None:
        """Saves masks, step counter and schedule state to `path` (atomically)."""
        check(capi.coppice_sparsifier_save(self._live(), c_string(path, "path")))

    def load(self, path: PathLike) -> None:
        """Restores a state saved by a sparsifier with the same config and parameters (instead
        of start())."""
        check(capi.coppice_sparsifier_load(self._live(), c_string(path, "path")))

    def __repr__(self) -> str:
        if self.closed:
            return f"<coppice.Sparsifier {self.method} (closed)>"
        return (
            f"<coppice.Sparsifier {self.method} {self.target_sparsity:g}, "
            f"{len(self._parameters)} parameters>"
        )
