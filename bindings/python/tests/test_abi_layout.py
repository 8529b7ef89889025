"""The ctypes declarations agree with include/coppice.h: struct layouts (compiled with the C
compiler) and the function list with argument counts (parsed from the header)."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess

import pytest

from coppice._capi import (
    _PROTOTYPES, CheckpointConfig, Conv2dParams, SparsifierConfig, TrainConfig, TrainResult, capi,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HEADER = os.path.join(REPO, "include", "coppice.h")

needs_header = pytest.mark.skipif(not os.path.exists(HEADER), reason="not in a source checkout")
STRUCTS = {
    "coppice_sparsifier_config": SparsifierConfig,
    "coppice_train_config": TrainConfig,
    "coppice_train_result": TrainResult,
    "coppice_checkpoint_config": CheckpointConfig,
    "coppice_conv2d_params": Conv2dParams,
}


def declarations() -> dict:
    """function name -> number of parameters, from the header (comments removed)."""
    text = open(HEADER).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"#[^\n]*", "", text)
    found = {}
    for match in re.finditer(r"\b(coppice_[a-z0-9_]+)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s*;", text):
        name, params = match.group(1), match.group(2).strip()
        found[name] = 0 if params in ("", "void") else params.count(",") + 1
    return found


@needs_header
def test_every_header_function_is_prototyped_with_its_arity():
    declared = declarations()
    assert len(declared) > 30
    missing = sorted(set(declared) - set(_PROTOTYPES))
    assert not missing, f"declared in coppice.h but not in _capi.py: {missing}"
    extra = sorted(set(_PROTOTYPES) - set(declared))
    assert not extra, f"in _capi.py but not declared in coppice.h: {extra}"
    wrong = {n: (len(_PROTOTYPES[n][1]), k) for n, k in declared.items() if len(_PROTOTYPES[n][1]) != k}
    assert not wrong, f"argument counts (ctypes, header) differ: {wrong}"
    assert capi.missing == [], f"the loaded library lacks {capi.missing}"


@needs_header
@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler")
def test_struct_layouts_match_the_c_compiler(tmp_path):
    lines = []
    for c_name, py in STRUCTS.items():
        lines.append(f'printf("{c_name} size %zu\\n", sizeof({c_name}));')
        for field, _ in py._fields_:
            lines.append(f'printf("{c_name} {field} %zu\\n", offsetof({c_name}, {field}));')
    source = tmp_path / "layout.c"
    source.write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"coppice.h\"\nint main(void) {\n"
        + "\n".join(lines) + "\nreturn 0;\n}\n"
    )
    binary = tmp_path / "layout"
    subprocess.run([os.environ.get("CC", "cc"), "-std=c99", "-I", os.path.dirname(HEADER),
                    str(source), "-o", str(binary)], check=True, capture_output=True)
    c_layout = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout.split("\n")
    expected = []
    for c_name, py in STRUCTS.items():
        expected.append(f"{c_name} size {ctypes.sizeof(py)}")
        for field, _ in py._fields_:
            expected.append(f"{c_name} {field} {getattr(py, field).offset}")
    assert [line for line in c_layout if line] == expected


@needs_header
def test_struct_field_names_follow_the_header_order():
    text = re.sub(r"/\*.*?\*/", "", open(HEADER).read(), flags=re.S)
    for c_name, py in STRUCTS.items():
        body = re.search(r"typedef struct " + c_name + r"\s*\{(.*?)\}\s*" + c_name + ";", text, re.S)
        assert body, c_name
        fields = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*;", body.group(1))
        assert fields == [f for f, _ in py._fields_], c_name
