#!/usr/bin/env python3
"""Writes the libFuzzer seed corpus for the two file readers (Python 3 standard library only).

    python3 fuzz/make-corpus.py        (or `make fuzz-corpus`)

fuzz/corpus/safetensors/: small valid safetensors files (F32, I32, U16 and U8 tensors,
__metadata__) laid out as SafeTensors.encode writes them, plus broken ones (each names its flaw).
fuzz/corpus/idx/: small valid IDX files of rank 1 to 4 and broken ones.
fuzz/corpus/csr/: sparse exports (CSR weights) as SparseExport.write lays them out, valid and
forged (row pointers past the values, unsorted columns, NaN values, absurd shapes).
Every file is < 4 KB.
The output is deterministic; stale *.safetensors / *.idx files in those folders are removed.
"""

import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SIZES = {"F32": 4, "I32": 4, "U16": 2, "U8": 1}
PACK = {"F32": "<f", "I32": "<i", "U16": "<H", "U8": "<B"}


def count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def values(dtype, n, seed):
    """n deterministic little-endian values of dtype."""
    out = bytearray()
    for i in range(n):
        k = (seed * 31 + i * 17) % 251
        if dtype == "F32":
            out += struct.pack("<f", (k - 125) / 16.0)
        elif dtype == "I32":
            out += struct.pack("<i", (k - 125) * 1000003 % 2**31)
        elif dtype == "U16":
            out += struct.pack("<H", k * 257)
        else:
            out += struct.pack("<B", k)
    return bytes(out)


def header_bytes(header):
    """The JSON header as SafeTensors.encode writes it: sorted keys, space-padded to 8 bytes."""
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8)


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape)], laid out contiguously in order."""
    header, data, offset = {}, b"", 0
    for seed, (name, dtype, shape) in enumerate(tensors):
        payload = values(dtype, count(shape), seed)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(payload)]}
        data += payload
        offset += len(payload)
    if metadata:
        header["__metadata__"] = metadata
    return with_header(header_bytes(header), data)


def with_header(header, data=b"", length=None):
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def raw_entry(entries, data, metadata=None):
    """A file with the header entries exactly as given (for the broken cases)."""
    header = dict(entries)
    if metadata is not None:
        header["__metadata__"] = metadata
    return with_header(header_bytes(header), data)


def safetensors_corpus():
    meta = {"format": "coppice", "model": "mlp"}
    mlp = safetensors(
        [("fc1.bias", "F32", [3]), ("fc1.weight", "F32", [3, 4]), ("fc1.weight.mask", "U8", [3, 4])],
        meta,
    )
    files = {
        "valid-mlp-f32-u8-meta": mlp,
        "valid-all-dtypes": safetensors(
            [("a.f32", "F32", [2, 3]), ("b.i32", "I32", [5]), ("c.u16", "U16", [2, 2, 2]), ("d.u8", "U8", [7])],
            {"format": "coppice", "note": "all four dtypes"},
        ),
        "valid-sparse-export": safetensors(
            [("w.values", "F32", [6]), ("w.indices", "I32", [6]), ("w.rows", "U16", [4]), ("w.mask", "U8", [3, 4])],
            {"format": "coppice-sparse", "sparsity": "0.5"},
        ),
        "valid-rank4-scalar-empty": safetensors(
            [("conv", "F32", [2, 1, 2, 2]), ("scalar", "I32", []), ("empty", "U16", [0, 3])]
        ),
        "valid-no-tensors": safetensors([], {"only": "metadata"}),
        "valid-empty-header": safetensors([]),
    }
    n = struct.unpack("<Q", mlp[:8])[0]
    body = mlp[8 + n :]
    header = json.loads(mlp[8 : 8 + n])
    f32 = values("F32", 4, 0)

    def broken(name, **entry):
        e = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
        e.update(entry)
        return raw_entry({name: e}, f32)

    files.update(
        {
            "bad-empty": b"",
            "bad-short-length": mlp[:5],
            "bad-truncated-header": mlp[: 8 + n // 2],
            "bad-truncated-data": mlp[:-5],
            "bad-trailing-bytes": mlp + b"\0\0\0\0",
            "bad-length-zero": with_header(b"", length=0),
            "bad-length-huge": struct.pack("<Q", 2**63 - 1) + mlp[8:],
            "bad-length-past-end": struct.pack("<Q", len(mlp)) + mlp[8:],
            # Ends the header inside its space padding: valid JSON, but the data would shift.
            "bad-length-one-short": struct.pack("<Q", n - 1) + mlp[8:],
            "bad-not-object": with_header(header_bytes([1, 2, 3])),
            "bad-invalid-json": with_header(b'{"a":{"dtype":"F32",]}   '),
            "bad-dtype-unknown": broken("t", dtype="F64"),
            "bad-dtype-not-string": broken("t", dtype=4),
            "bad-shape-negative": broken("t", shape=[-1]),
            "bad-shape-absurd": broken("t", shape=[1 << 40, 1 << 40]),
            "bad-shape-overflow": broken("t", shape=[2**31 - 1] * 4),
            "bad-shape-mismatch": broken("t", shape=[2]),
            "bad-offsets-reversed": broken("t", data_offsets=[4, 0]),
            "bad-offsets-out-of-range": broken("t", data_offsets=[0, 400]),
            "bad-offsets-three": broken("t", data_offsets=[0, 4, 8]),
            "bad-offsets-overlap": raw_entry(
                {
                    "a": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
                    "b": {"dtype": "U8", "shape": [3], "data_offsets": [1, 4]},
                },
                b"\1\2\3\4",
            ),
            "bad-offsets-duplicate": raw_entry(
                {
                    "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                    "b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                },
                b"\1\2\3\4",
            ),
            "bad-offsets-hole": raw_entry(
                {"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}, b"\1\2\3\4"
            ),
            "bad-entry-not-object": raw_entry({"t": [1, 2]}, b""),
            "bad-metadata-not-strings": raw_entry({}, b"", {"epochs": 5}),
            "bad-deep-nesting": with_header(b"[" * 600 + b"]" * 600),
        }
    )
    assert header["fc1.weight"]["shape"] == [3, 4] and len(body) == 3 * 4 + 12 * 4 + 12
    return {f"{k}.safetensors": v for k, v in files.items()}


def idx(dims, data=None, magic=b"\0\0\x08"):
    n = count(dims)
    payload = bytes((i * 37 + 11) % 256 for i in range(n)) if data is None else data
    return magic + bytes([len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def idx_corpus():
    labels = idx([10])
    images = idx([3, 4, 5])
    files = {
        "valid-rank1-labels": labels,
        "valid-rank2": idx([4, 6]),
        "valid-rank3-images": images,
        "valid-rank3-zero-dim": idx([0, 28, 28]),
        "valid-rank4": idx([2, 1, 3, 3]),
        "valid-zero-dim-huge-other": idx([0xFFFFFFFF, 0]),
        "bad-empty": b"",
        "bad-short-magic": b"\0\0\x08",
        "bad-truncated-dims": images[:10],
        "bad-truncated-data": images[:-1],
        "bad-trailing-bytes": labels + b"\0",
        "bad-magic": b"\x1f\x8b" + images[2:],
        "bad-type-float": idx([3], bytes(12), magic=b"\0\0\x0d"),
        "bad-rank0": b"\0\0\x08\0",
        "bad-rank5": idx([1, 1, 1, 1, 2]),
        "bad-dims-absurd": idx([0xFFFFFFFF, 0xFFFFFFFF], b""),
        "bad-dims-overflow": idx([0xFFFFFFFF] * 4, b"\0"),
        # Zero elements, but rows * columns overflows (found by the fuzzer).
        "bad-dims-zero-count-overflow": idx([0, 0xFFFFFFFF, 0xFFFFFFFF]),
        "bad-dims-fuzz-crash-b96950b5": bytes.fromhex("00000804ffffffffffff00000000000000" "14fffd"),
    }
    return {f"{k}.idx": v for k, v in files.items()}


def csr_file(weights, dense=(), metadata=None):
    """A sparse export as SparseExport.write lays it out. weights: [(name, shape, values,
    indices, indptr, index_dtype)]; dense: [(name, dtype, shape)] stored as is."""
    tensors, shapes = [], {}
    for name, shape, vals, indices, indptr, index_dtype in weights:
        tensors.append((f"{name}.csr.values", "F32", [len(vals)], b"".join(struct.pack("<f", v) for v in vals)))
        tensors.append((f"{name}.csr.indices", index_dtype, [len(indices)],
                        b"".join(struct.pack(PACK[index_dtype], i) for i in indices)))
        tensors.append((f"{name}.csr.indptr", "I32", [len(indptr)], b"".join(struct.pack("<i", p) for p in indptr)))
        shapes[f"{name}.csr.shape"] = json.dumps(shape)
    for seed, (name, dtype, shape) in enumerate(dense):
        tensors.append((name, dtype, shape, values(dtype, count(shape), seed)))
    header, data, offset = {}, b"", 0
    for name, dtype, shape, payload in sorted(tensors):
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(payload)]}
        data += payload
        offset += len(payload)
    meta = {"format": "coppice", "kind": "sparse-export", "export_version": "1", "model": "mlp",
            "classes": "10"}
    meta.update(shapes)
    meta.update(metadata or {})
    header["__metadata__"] = meta
    return with_header(header_bytes(header), data)


def csr_corpus():
    """Sparse exports for the CSR loader: valid ones (U16 and I32 indices, empty rows, a 4-D
    weight, an all-zero weight) and forged ones, each naming its flaw."""
    w = ("fc.weight", [3, 4], [0.5, -1.0, 2.0, 0.25, -0.75], [0, 3, 1, 0, 2], [0, 2, 3, 5], "U16")

    def forged(**change):
        fields = dict(zip(("name", "shape", "vals", "indices", "indptr", "index_dtype"), w))
        fields.update(change)
        return csr_file([tuple(fields.values())], [("fc.bias", "F32", [3])])

    files = {
        "valid-u16": csr_file([w], [("fc.bias", "F32", [3])]),
        "valid-i32": forged(index_dtype="I32"),
        "valid-empty-rows": forged(vals=[1.0], indices=[2], indptr=[0, 0, 1, 1]),
        "valid-all-zero": forged(vals=[], indices=[], indptr=[0, 0, 0, 0]),
        "valid-conv-4d": csr_file(
            [("conv.weight", [2, 1, 2, 2], [1.0, 2.0, 3.0], [0, 3, 2], [0, 2, 3], "U16")]),
        "valid-two-weights": csr_file(
            [w, ("fc2.weight", [2, 3], [1.5, -2.5], [1, 2], [0, 1, 2], "I32")]),
        # Issue 15: a pointer that rises past the values and falls back ([0, 6, 5, 5] with 5
        # values) used to be followed before the fall was seen.
        "bad-indptr-rises-past-values": forged(shape=[3, 8], indices=[0, 1, 2, 3, 4], indptr=[0, 6, 5, 5]),
        "bad-indptr-decreasing": forged(indptr=[0, 3, 2, 5]),
        "bad-indptr-negative": forged(indptr=[0, -2, 3, 5]),
        "bad-indptr-not-zero-first": forged(indptr=[1, 2, 3, 5]),
        "bad-indptr-short-last": forged(indptr=[0, 2, 3, 4]),
        "bad-indptr-wrong-length": forged(indptr=[0, 2, 5]),
        "bad-index-out-of-range": forged(indices=[0, 4, 1, 0, 2]),
        "bad-index-unsorted": forged(indices=[3, 0, 1, 0, 2]),
        "bad-index-duplicate": forged(indices=[0, 0, 1, 0, 2]),
        "bad-index-negative-i32": forged(indices=[0, -1, 1, 0, 2], index_dtype="I32"),
        "bad-values-nan": forged(vals=[0.5, float("nan"), 2.0, 0.25, -0.75]),
        "bad-values-inf": forged(vals=[0.5, float("inf"), 2.0, 0.25, -0.75]),
        "bad-shape-negative": forged(shape=[-3, -4]),
        "bad-shape-overflow": forged(shape=[2**62, 4]),
        "bad-shape-empty": forged(shape=[]),
        "bad-shape-mismatch": forged(shape=[4, 3]),
        "bad-shape-missing": csr_file([w], metadata={"fc.weight.csr.shape": "not json"}),
        "bad-indices-count": forged(indices=[0, 3, 1, 0]),
    }
    return {f"{k}.safetensors": v for k, v in files.items()}


def write(folder, files, suffix):
    path = os.path.join(ROOT, folder)
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(suffix) and name not in files:
            os.remove(os.path.join(path, name))
    for name, data in sorted(files.items()):
        assert len(data) < 4096, name
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
    print(f"{path}: {len(files)} files")


if __name__ == "__main__":
    write("safetensors", safetensors_corpus(), ".safetensors")
    write("idx", idx_corpus(), ".idx")
    write("csr", csr_corpus(), ".safetensors")
