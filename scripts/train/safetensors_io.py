"""Minimal safetensors reader/writer (formats.md §3), no safetensors package needed.

    write_safetensors("model.safetensors", [("emb.weight", array), ...], {"format": "pt"})
    tensors, metadata = read_safetensors("model.safetensors")      # {name: np.ndarray}

Layout: uint64 little-endian header length N, N bytes of JSON (padded with spaces so the data
starts 8-byte aligned), then the tensors back to back, row-major little-endian, in header order.
"""

import json
import os
import struct

import numpy as np

_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"),
           "I32": np.dtype("<i4"), "U8": np.dtype("u1")}


def write_safetensors(path, tensors, metadata=None):
    """tensors: [(name, np.ndarray)] written in that order. Replaces path atomically."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    arrays = []
    offset = 0
    for name, array in tensors:
        if name in header:
            raise ValueError("tensor %s twice" % name)
        dtype = next((k for k, d in _DTYPES.items() if d == array.dtype.newbyteorder("<")), None)
        if dtype is None:
            raise ValueError("%s: unsupported dtype %s" % (name, array.dtype))
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        arrays.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in arrays:
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_safetensors(path):
    """Returns ({name: np.ndarray}, metadata dict). BF16 is widened to float32 exactly."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (n,) = struct.unpack_from("<Q", raw, 0)
    if n > len(raw) - 8 or n > 100 << 20:
        raise ValueError("%s: header length %d is out of range" % (path, n))
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        buf = raw[base + begin:base + end]
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        elif info["dtype"] in _DTYPES:
            arr = np.frombuffer(buf, dtype=_DTYPES[info["dtype"]])
        else:
            raise ValueError("%s: %s has unsupported dtype %s" % (path, name, info["dtype"]))
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError("%s: %s has %d elements, shape %s" % (path, name, arr.size, shape))
        tensors[name] = arr.reshape(shape)
    return tensors, metadata
