"""The C declarations of coppice.h as ctypes: structs, callback types and function prototypes.

Every function of the header gets its argtypes/restype here, once. A function that the loaded
library does not export (an older library than these bindings) is replaced by a stub that
raises CoppiceError(COPPICE_UNSUPPORTED) when called, so `import coppice` still works.
"""

from __future__ import annotations

import ctypes
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int64,
    c_size_t,
    c_uint64,
    c_void_p,
)
from typing import Any, Callable

from ._library import CoppiceError, lib, library_path

__all__ = [
    "SparsifierConfig",
    "TrainConfig",
    "TrainResult",
    "LOG_CALLBACK",
    "EPOCH_CALLBACK",
    "capi",
    "has",
]

status_t = c_int

# Opaque handles are passed as void pointers.
handle_t = c_void_p


class SparsifierConfig(Structure):
    """coppice_sparsifier_config (initialise with coppice_sparsifier_config_init)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("method", c_char_p),
        ("sparsity", c_double),
        ("distribution", c_char_p),
        ("erk_power", c_double),
        ("keep_first_dense", c_int),
        ("keep_last_dense", c_int),
        ("total_steps", c_int64),
        ("steps_per_epoch", c_int64),
        ("partitions", c_int),
        ("partition_balance", c_char_p),
        ("gap_step_length", c_int64),
        ("rounds", c_int),
        ("update_interval", c_int64),
        ("drop_fraction", c_double),
        ("prune_step", c_int64),
        ("seed", c_uint64),
        # since 0.2
        ("gap_prune", c_char_p),
        ("global_magnitude", c_int),
        ("reset_optimizer_state", c_int),
        ("restart_optimizer_per_step", c_int),
        ("restart_lr_per_step", c_int),
        ("restart_warmup_per_step", c_int),
        ("pgap_merge", c_char_p),
        ("initial_sparsity", c_double),
        ("pruning_begin_step", c_int64),
        ("pruning_end_step", c_int64),
        ("pruning_frequency", c_int64),
        ("drop_fraction_decay", c_char_p),
        ("update_end_fraction", c_double),
        ("reference_mask_updates", c_int),
        ("warmup_epochs", c_int),  # coppice_train only
    ]


class SparsifierEvent(Structure):
    """coppice_sparsifier_event (set struct_size to its size before next_event)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("kind", c_int),
        ("partition", c_int),
        ("step", c_int64),
        ("sparsity", c_double),
        ("layer_count", c_int),
        ("kind_name", c_char_p),
        ("layers", c_char_p),
    ]


EPOCH_CALLBACK = CFUNCTYPE(c_int, c_int, c_double, c_double, c_double, c_double, c_void_p)
LOG_CALLBACK = CFUNCTYPE(None, c_int, c_char_p, c_void_p)


class TrainConfig(Structure):
    """coppice_train_config (initialise with coppice_train_config_init)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("epochs", c_int),
        ("batch_size", c_int),
        ("learning_rate", c_float),
        ("optimizer", c_char_p),
        ("momentum", c_float),
        ("weight_decay", c_float),
        ("lr_schedule", c_char_p),
        ("seed", c_uint64),
        ("on_epoch", EPOCH_CALLBACK),
        ("user_data", c_void_p),
        ("sparsity", SparsifierConfig),  # stays last (the header's rule)
    ]


class CheckpointConfig(Structure):
    """coppice_checkpoint_config (initialise with coppice_checkpoint_config_init)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("directory", c_char_p),
        ("every_epochs", c_int),
        ("keep", c_int),
        ("resume", c_int),
    ]


class Conv2dParams(Structure):
    """coppice_conv2d_params."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("stride_h", c_int),
        ("stride_w", c_int),
        ("pad_h", c_int),
        ("pad_w", c_int),
        ("dilation_h", c_int),
        ("dilation_w", c_int),
    ]


class TrainResult(Structure):
    """coppice_train_result."""

    _fields_ = [
        ("test_accuracy", c_double),
        ("sparsity", c_double),
        ("train_seconds", c_double),
        ("epochs", c_int),
    ]


P = POINTER
_float_p = c_void_p  # float * buffers are passed as raw addresses (numpy/torch data pointers)
_u8_p = c_void_p

# name: (restype, argtypes)
_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "coppice_version": (c_char_p, []),
    "coppice_version_number": (c_int, []),
    "coppice_last_error": (c_char_p, []),
    "coppice_status_name": (c_char_p, [status_t]),
    "coppice_set_threads": (status_t, [c_int]),
    "coppice_get_threads": (c_int, []),
    "coppice_set_idle_spin": (status_t, [c_int]),
    "coppice_set_parallel_runner": (status_t, [c_void_p]),
    "coppice_set_log_callback": (None, [LOG_CALLBACK, c_void_p]),
    # sparsifier
    "coppice_sparsifier_config_init": (None, [P(SparsifierConfig)]),
    "coppice_sparsifier_create": (status_t, [P(SparsifierConfig), P(handle_t)]),
    "coppice_sparsifier_destroy": (None, [handle_t]),
    "coppice_sparsifier_add_parameter": (
        status_t,
        [handle_t, c_char_p, _float_p, P(c_int64), c_int, _float_p, c_double],
    ),
    "coppice_sparsifier_set_partition": (status_t, [handle_t, c_char_p, c_int]),
    "coppice_sparsifier_set_partition_list": (status_t, [handle_t, c_char_p]),
    "coppice_sparsifier_set_layer_sparsity": (status_t, [handle_t, c_char_p, c_double]),
    "coppice_sparsifier_set_block": (status_t, [handle_t, c_char_p, c_char_p]),
    "coppice_sparsifier_partition_count": (status_t, [handle_t, P(c_int)]),
    "coppice_sparsifier_partition_of": (status_t, [handle_t, c_char_p, P(c_int)]),
    "coppice_sparsifier_masks_frozen": (status_t, [handle_t, P(c_int)]),
    "coppice_sparsifier_skips_optimizer_step": (status_t, [handle_t, P(c_int)]),
    "coppice_sparsifier_ended_gap_step": (status_t, [handle_t, P(c_int)]),
    "coppice_sparsifier_next_event": (status_t, [handle_t, P(SparsifierEvent), P(c_int)]),
    "coppice_sparsifier_start": (status_t, [handle_t]),
    "coppice_sparsifier_mask_gradients": (status_t, [handle_t]),
    "coppice_sparsifier_step": (status_t, [handle_t, P(c_int)]),
    "coppice_sparsifier_needs_dense_gradients": (status_t, [handle_t, P(c_int)]),
    "coppice_sparsifier_get_mask": (status_t, [handle_t, c_char_p, _u8_p, c_int64]),
    "coppice_sparsifier_changed_mask": (status_t, [handle_t, c_char_p, _u8_p, c_int64]),
    "coppice_sparsifier_sparsity": (status_t, [handle_t, c_char_p, P(c_double)]),
    "coppice_sparsifier_parameter_info": (
        status_t,
        [handle_t, c_int, P(c_char_p), P(c_int64)],
    ),
    "coppice_sparsifier_parameter_count": (status_t, [handle_t, P(c_int)]),
    "coppice_sparsifier_steps": (status_t, [handle_t, P(c_int64)]),
    "coppice_sparsifier_phase": (c_char_p, [handle_t]),
    "coppice_sparsifier_pgap_status": (status_t, [handle_t, P(c_int), P(c_int), P(c_int)]),
    "coppice_sparsifier_pgap_begin_worker": (status_t, [handle_t, c_int]),
    "coppice_sparsifier_pgap_partition_size": (status_t, [handle_t, c_int, P(c_int64)]),
    "coppice_sparsifier_pgap_export_partition": (
        status_t,
        [handle_t, c_int, _float_p, _u8_p, c_int64],
    ),
    "coppice_sparsifier_pgap_import_partition": (status_t, [handle_t, c_int, _float_p, c_int64]),
    "coppice_sparsifier_pgap_finish_round": (status_t, [handle_t]),
    "coppice_sparsifier_save": (status_t, [handle_t, c_char_p]),
    "coppice_sparsifier_load": (status_t, [handle_t, c_char_p]),
    # sparse matrices
    "coppice_sparse_matrix_create": (
        status_t,
        [c_int64, c_int64, _float_p, _u8_p, P(handle_t)],
    ),
    "coppice_sparse_matrix_destroy": (None, [handle_t]),
    "coppice_sparse_matrix_update": (status_t, [handle_t, _float_p]),
    "coppice_sparse_matrix_nnz": (status_t, [handle_t, P(c_int64)]),
    "coppice_spmm": (status_t, [handle_t, c_int64, _float_p, c_float, _float_p]),
    "coppice_spmm_transposed": (status_t, [handle_t, c_int64, _float_p, c_float, _float_p]),
    "coppice_sddmm": (status_t, [handle_t, c_int64, _float_p, _float_p, _float_p]),
    # sparse layers
    "coppice_conv2d_params_init": (None, [P(Conv2dParams)]),
    "coppice_layer_linear_create": (status_t, [handle_t, c_char_p, P(handle_t)]),
    "coppice_layer_conv2d_create": (status_t, [handle_t, c_char_p, P(Conv2dParams), P(handle_t)]),
    "coppice_layer_linear_create_masked": (
        status_t,
        [c_int64, c_int64, _float_p, _u8_p, P(handle_t)],
    ),
    "coppice_layer_conv2d_create_masked": (
        status_t,
        [P(c_int64), _float_p, _u8_p, P(Conv2dParams), P(handle_t)],
    ),
    "coppice_layer_destroy": (None, [handle_t]),
    "coppice_batchnorm2d_forward": (
        status_t,
        [P(c_int64), _float_p, _float_p, _float_p, c_float, c_float, _float_p, _float_p,
         _float_p, _float_p, c_int, _float_p],
    ),
    "coppice_batchnorm2d_backward": (
        status_t,
        [P(c_int64), _float_p, _float_p, _float_p, _float_p, _float_p, _float_p, _float_p,
         _float_p, _float_p],
    ),
    "coppice_batchnorm2d_relu_backward": (
        status_t,
        [P(c_int64), _float_p, _float_p, _float_p, _float_p, _float_p, _float_p, _float_p,
         _float_p, _float_p],
    ),
    "coppice_batchnorm2d_relu_maxpool2_forward": (
        status_t,
        [P(c_int64), _float_p, _float_p, _float_p, c_float, c_float, _float_p, _float_p,
         _float_p, _float_p, _float_p, c_void_p],
    ),
    "coppice_batchnorm2d_relu_maxpool2_backward": (
        status_t,
        [P(c_int64), _float_p, _float_p, _float_p, _float_p, _float_p, c_void_p, _float_p,
         _float_p, _float_p, _float_p],
    ),
    "coppice_batchnorm2d_relu_maxpool2_backward_with_beta": (
        status_t,
        [P(c_int64), _float_p, _float_p, _float_p, _float_p, _float_p, _float_p, c_void_p,
         _float_p, _float_p, _float_p, _float_p],
    ),
    "coppice_maxpool2d_output_size": (
        status_t,
        [P(c_int64), c_int64, c_int64, c_int64, P(c_int64), P(c_int64)],
    ),
    "coppice_maxpool2d_forward": (
        status_t,
        [P(c_int64), c_int64, c_int64, c_int64, _float_p, _float_p, c_void_p],
    ),
    "coppice_maxpool2d_backward": (
        status_t,
        [P(c_int64), c_int64, c_int64, c_int64, c_void_p, _float_p, _float_p],
    ),
    "coppice_layer_linear_forward": (status_t, [handle_t, _float_p, c_int64, _float_p, _float_p]),
    "coppice_layer_linear_backward": (
        status_t,
        [handle_t, _float_p, _float_p, c_int64, _float_p, _float_p, _float_p],
    ),
    "coppice_layer_conv2d_output_size": (
        status_t,
        [handle_t, c_int64, c_int64, P(c_int64), P(c_int64)],
    ),
    "coppice_layer_conv2d_forward": (
        status_t,
        [handle_t, _float_p, c_int64, c_int64, c_int64, _float_p, _float_p],
    ),
    "coppice_layer_conv2d_backward": (
        status_t,
        [handle_t, _float_p, _float_p, c_int64, c_int64, c_int64, _float_p, _float_p, _float_p],
    ),
    "coppice_layer_plan": (status_t, [handle_t, c_int64, c_int64, c_int64, P(c_int), P(c_int)]),
    "coppice_layer_execution": (status_t, [handle_t, P(c_int), P(c_int)]),
    # engine
    "coppice_model_create": (status_t, [c_char_p, c_uint64, c_int, P(handle_t)]),
    "coppice_model_destroy": (None, [handle_t]),
    "coppice_model_parameter_count": (status_t, [handle_t, P(c_int64)]),
    "coppice_model_shape": (status_t, [handle_t, P(c_int), P(c_int), P(c_int)]),
    "coppice_model_save": (status_t, [handle_t, c_char_p]),
    "coppice_model_load": (status_t, [handle_t, c_char_p]),
    "coppice_dataset_create": (
        status_t,
        [_float_p, c_void_p, c_int64, c_int, c_int, c_int, P(handle_t)],
    ),
    "coppice_dataset_load_idx": (status_t, [c_char_p, c_char_p, c_int64, P(handle_t)]),
    "coppice_dataset_destroy": (None, [handle_t]),
    "coppice_dataset_count": (status_t, [handle_t, P(c_int64)]),
    "coppice_train_config_init": (None, [P(TrainConfig)]),
    "coppice_train": (
        status_t,
        [handle_t, handle_t, handle_t, P(TrainConfig), P(TrainResult)],
    ),
    "coppice_checkpoint_config_init": (None, [P(CheckpointConfig)]),
    "coppice_train_checkpointed": (
        status_t,
        [handle_t, handle_t, handle_t, P(TrainConfig), P(CheckpointConfig), P(TrainResult)],
    ),
    "coppice_model_export": (status_t, [handle_t, c_char_p, P(c_int64), P(c_int64)]),
    "coppice_file_inspect": (status_t, [c_char_p, c_char_p, c_size_t, P(c_size_t)]),
    "coppice_evaluate": (status_t, [handle_t, handle_t, P(c_double)]),
    "coppice_predict": (
        status_t,
        [handle_t, _float_p, c_int64, c_int, c_int, _float_p, c_int64],
    ),
}

SHAPE_MISMATCH = 2
UNSUPPORTED = 8


class _Functions:
    """Attribute access to the prototyped C functions (`capi.coppice_spmm(...)`)."""

    def __init__(self) -> None:
        self.missing: list[str] = []
        for name, (restype, argtypes) in _PROTOTYPES.items():
            try:
                function = getattr(lib, name)
            except AttributeError:
                self.missing.append(name)
                setattr(self, name, _missing(name))
                continue
            function.restype = restype
            function.argtypes = argtypes
            setattr(self, name, function)


def _missing(name: str) -> Callable[..., Any]:
    def stub(*_args: Any) -> Any:
        raise CoppiceError(
            UNSUPPORTED, f"{name} is not exported by {library_path} (library older than the bindings?)"
        )

    stub.__name__ = name
    return stub


capi = _Functions()


def has(name: str) -> bool:
    """Whether the loaded library exports C function `name`."""
    return name in _PROTOTYPES and name not in capi.missing
