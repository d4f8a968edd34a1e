#!/usr/bin/python3
"""Convert a BlinkDL RWKV PyTorch checkpoint (.pth) to safetensors, offline.

    /usr/bin/python3 scripts/pth_to_safetensors.py RWKV-x070-World-0.1B.pth model.safetensors --dtype f16

The output keeps the checkpoint's raw BlinkDL tensor names, shapes and values: no decay
exponentials, transposes or concatenations. rwkv-edge's importer (read_safetensors) applies
the rwkv.cpp transforms when it loads the file, so conversion logic lives in one place.

Why a separate step: unpickling a .pth can run arbitrary code, so the server never loads one.
This script uses torch.load(weights_only=True) (Debian's python3-torch) and writes a
safetensors file (JSON header + raw little-endian bytes) without the safetensors package.

The header's __metadata__ carries {"format": "pt", "rwkv_edge.layout": "blinkdl",
"rwkv_edge.source": <input file name>} so the importer knows the tensors are raw BlinkDL ones.
"""

import argparse
import json
import os
import struct
import sys
import tempfile
import zipfile

_DTYPES = {"f32": ("F32", "float32"), "f16": ("F16", "float16")}


def _fail(msg):
    print("pth_to_safetensors: error: " + msg, file=sys.stderr)
    sys.exit(1)


def _parse_args(argv):
    p = argparse.ArgumentParser(
        description="Convert a BlinkDL RWKV .pth checkpoint to safetensors with raw BlinkDL "
        "names and values (rwkv-edge applies the rwkv.cpp transforms when it loads the file).")
    p.add_argument("input", help="PyTorch checkpoint (.pth, zip format, PyTorch >= 1.6)")
    p.add_argument("output", help="safetensors file to write (replaced atomically)")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="f32",
                   help="element type of every tensor in the output (default: f32; bf16 "
                   "checkpoints convert exactly to f32)")
    p.add_argument("--quiet", action="store_true", help="do not list the tensors")
    return p.parse_args(argv)


def _load_state_dict(path, torch):
    if not os.path.isfile(path):
        _fail("%s: no such file" % path)
    if not zipfile.is_zipfile(path):
        _fail("%s: not a zip-format PyTorch checkpoint (files saved before PyTorch 1.6 are not "
              "supported; re-save it with a recent torch.save)" % path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types; all mean the same to the user
        _fail("%s: torch.load(weights_only=True) refused the file: %s" % (path, e))
    # Training checkpoints sometimes wrap the weights.
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        _fail("%s: expected a dict of tensors, found %s" % (path, type(obj).__name__))
    return obj


def _collect(state_dict, torch, itemsize, quiet):
    """Returns [(name, shape, nbytes, tensor)], skipping entries that are not float tensors."""
    out = []
    for name, value in state_dict.items():
        if not isinstance(name, str):
            _fail("tensor name %r is not a string" % (name,))
        if not isinstance(value, torch.Tensor):
            print("skipping %s: not a tensor (%s)" % (name, type(value).__name__), file=sys.stderr)
            continue
        if not value.is_floating_point():
            print("skipping %s: %s is not a floating-point tensor" % (name, value.dtype), file=sys.stderr)
            continue
        shape = list(value.shape)
        out.append((name, shape, value.numel() * itemsize, value))
        if not quiet:
            print("%-40s %-18s %s" % (name, tuple(shape), str(value.dtype).replace("torch.", "")))
    if not out:
        _fail("no floating-point tensors found")
    return out


def _tensor_bytes(value, np_dtype):
    # .float() first: numpy has no bf16, and bf16 -> f32 is exact. One tensor at a time, so
    # memory stays at the checkpoint plus its largest tensor.
    arr = value.detach().float().contiguous().numpy().astype(np_dtype.newbyteorder("<"), copy=False)
    return arr.tobytes(order="C")


def _header(tensors, st_dtype, source):
    header = {"__metadata__": {"format": "pt", "rwkv_edge.layout": "blinkdl", "rwkv_edge.source": source}}
    offset = 0
    for name, shape, nbytes, _ in tensors:
        header[name] = {"dtype": st_dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # Pad with spaces so the data buffer starts 8-byte aligned, as the reference writer does.
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return text


def _write_atomic(path, header, tensors, np_dtype):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".pth_to_safetensors.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            for name, _, nbytes, value in tensors:
                data = _tensor_bytes(value, np_dtype)
                if len(data) != nbytes:
                    raise RuntimeError("%s: %d bytes, expected %d" % (name, len(data), nbytes))
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main(argv=None):
    args = _parse_args(argv)
    try:
        import torch  # noqa: imported late so --help works without torch
    except ImportError:
        _fail("PyTorch is not installed for %s (Debian: apt-get install python3-torch)" % sys.executable)
    import numpy as np

    st_dtype, np_name = _DTYPES[args.dtype]
    np_dtype = np.dtype(np_name)
    state_dict = _load_state_dict(args.input, torch)
    tensors = _collect(state_dict, torch, np_dtype.itemsize, args.quiet)
    header = _header(tensors, st_dtype, os.path.basename(args.input))
    try:
        _write_atomic(args.output, header, tensors, np_dtype)
    except OSError as e:
        _fail("%s: cannot write: %s" % (args.output, e))
    print("wrote %s: %d tensors, %s" % (args.output, len(tensors), args.dtype.upper()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
