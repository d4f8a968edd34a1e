"""Minimal GGUF v3 reader/writer for rwkv-edge files (formats.md §2), no gguf package needed.

    g = read_gguf("models/default.gguf")
    g.metadata["rwkv_edge.block_count"]          # -> 6 (int); arrays are (elem_type, [values])
    w = g.array("blocks.0.att.key.weight")       # np.ndarray, row-major [out, in], f32 or f16
    g.set_array("blocks.0.att.key.weight", w2)   # same shape; stored in the tensor's GGUF type
    write_gguf("out.gguf", g)

Layout: magic "GGUF", version 3, tensor count, metadata count (all little-endian); metadata
key/value pairs; tensor infos (name, dims fastest first, type id, data offset); padding to
general.alignment (default 32); tensor data, each at a multiple of the alignment.

Tensor types read/written as numpy arrays: F32 (0) and F16 (1). Other types (q8_0, i8r, i1r,
...) are carried through unchanged as raw bytes; array() refuses them by name. Metadata keeps
each value's GGUF type so a read-then-written file has the same header apart from edits.
"""

import struct
from collections import OrderedDict

import numpy as np

MAGIC = 0x46554747  # b"GGUF"
VERSION = 3
DEFAULT_ALIGNMENT = 32

# Metadata value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_SCALAR = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i", FLOAT32: "<f",
           BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}

# Tensor types we turn into numpy arrays.
T_F32, T_F16 = 0, 1
_NP = {T_F32: np.dtype("<f4"), T_F16: np.dtype("<f2")}
TYPE_NAMES = {0: "f32", 1: "f16", 8: "q8_0", 100: "i8r", 101: "i1r"}


class GgufError(ValueError):
    pass


class Tensor:
    """One tensor: name, ne (dims fastest first), GGUF type id and its raw bytes."""

    def __init__(self, name, ne, type_id, data):
        self.name, self.ne, self.type, self.data = name, list(ne), type_id, data

    @property
    def shape(self):
        """numpy (row-major) shape: ne reversed, e.g. ne {in, out} -> (out, in)."""
        return tuple(reversed(self.ne))


class Gguf:
    def __init__(self, path=""):
        self.path = path
        self.metadata = OrderedDict()  # key -> value (arrays: (elem_type, list))
        self.types = {}                # key -> GGUF value type
        self.tensors = OrderedDict()   # name -> Tensor

    def tensor(self, name):
        t = self.tensors.get(name)
        if t is None:
            raise GgufError("%s: tensor '%s' is missing" % (self.path, name))
        return t

    def array(self, name):
        """The tensor as a float numpy array of its row-major shape (a copy)."""
        t = self.tensor(name)
        if t.type not in _NP:
            raise GgufError("%s: tensor '%s' has type %s; only f32 and f16 can be read as arrays" % (
                self.path, name, TYPE_NAMES.get(t.type, str(t.type))))
        return np.frombuffer(t.data, dtype=_NP[t.type]).reshape(t.shape).copy()

    def set_array(self, name, array):
        """Replaces the values of an existing f32/f16 tensor (same shape), keeping its type."""
        t = self.tensor(name)
        if t.type not in _NP:
            raise GgufError("%s: cannot store into tensor '%s' of type %s" % (
                self.path, name, TYPE_NAMES.get(t.type, str(t.type))))
        array = np.asarray(array)
        if tuple(array.shape) != t.shape:
            raise GgufError("%s: tensor '%s' has shape %s, new values %s" % (self.path, name, t.shape, array.shape))
        if not np.all(np.isfinite(array)):
            raise GgufError("tensor '%s': new values are not all finite" % name)
        t.data = np.ascontiguousarray(array, dtype=_NP[t.type]).tobytes()

    def set_string(self, key, value):
        self.metadata[key] = str(value)
        self.types[key] = STRING


class _Reader:
    def __init__(self, raw, path):
        self.raw, self.pos, self.path = raw, 0, path

    def take(self, n):
        if n < 0 or self.pos + n > len(self.raw):
            raise GgufError("%s: truncated at byte %d (need %d more)" % (self.path, self.pos, n))
        b = self.raw[self.pos:self.pos + n]
        self.pos += n
        return b

    def scalar(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.scalar("<Q")
        at = self.pos
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise GgufError("%s: string at byte %d is not UTF-8" % (self.path, at))

    def value(self, vtype):
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            etype = self.scalar("<I")
            count = self.scalar("<Q")
            if etype in _SCALAR:
                size = struct.calcsize(_SCALAR[etype])
                return (etype, list(struct.unpack("<%d%s" % (count, _SCALAR[etype][1]), self.take(size * count))))
            return (etype, [self.value(etype) for _ in range(count)])
        if vtype not in _SCALAR:
            raise GgufError("%s: unknown metadata value type %d at byte %d" % (self.path, vtype, self.pos))
        return self.scalar(_SCALAR[vtype])


def _tensor_bytes(ne, type_id, name, path):
    n = int(np.prod(ne, dtype=np.int64))
    rows = n // ne[0] if ne[0] else 0
    if type_id == T_F32:
        return 4 * n
    if type_id == T_F16:
        return 2 * n
    if type_id == 8:    # q8_0: blocks of 32 = f16 scale + 32 int8
        return n // 32 * 34
    if type_id == 100:  # i8r: per row f32 scale + int8 values
        return rows * (4 + ne[0])
    if type_id == 101:  # i1r: per row f32 scale + 1 bit per value
        return rows * (4 + (ne[0] + 7) // 8)
    raise GgufError("%s: tensor '%s' has unknown type id %d" % (path, name, type_id))


def read_gguf(path):
    with open(path, "rb") as f:
        raw = f.read()
    r = _Reader(raw, path)
    if len(raw) < 24 or r.scalar("<I") != MAGIC:
        raise GgufError("%s: not a GGUF file (bad magic)" % path)
    version = r.scalar("<I")
    if version != VERSION:
        raise GgufError("%s: GGUF version %d, expected %d" % (path, version, VERSION))
    n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
    g = Gguf(path)
    for _ in range(n_kv):
        key = r.string()
        vtype = r.scalar("<I")
        g.metadata[key] = r.value(vtype)
        g.types[key] = vtype
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.scalar("<I")
        if not 1 <= n_dims <= 4:
            raise GgufError("%s: tensor '%s' has %d dims" % (path, name, n_dims))
        ne = [r.scalar("<Q") for _ in range(n_dims)]
        infos.append((name, ne, r.scalar("<I"), r.scalar("<Q")))
    alignment = int(g.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
    data_start = (r.pos + alignment - 1) // alignment * alignment
    for name, ne, type_id, offset in infos:
        size = _tensor_bytes(ne, type_id, name, path)
        begin = data_start + offset
        if begin + size > len(raw):
            raise GgufError("%s: tensor '%s' data runs past the end of the file" % (path, name))
        g.tensors[name] = Tensor(name, ne, type_id, raw[begin:begin + size])
    return g


def _pack_value(vtype, value):
    if vtype == STRING:
        b = value.encode("utf-8")
        return struct.pack("<Q", len(b)) + b
    if vtype == ARRAY:
        etype, items = value
        head = struct.pack("<IQ", etype, len(items))
        if etype in _SCALAR:
            return head + struct.pack("<%d%s" % (len(items), _SCALAR[etype][1]), *items)
        return head + b"".join(_pack_value(etype, v) for v in items)
    return struct.pack(_SCALAR[vtype], value)


def write_gguf(path, g):
    """Writes g (metadata in order, then tensors in order). Replaces path atomically."""
    import os
    alignment = int(g.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
    out = [struct.pack("<IIQQ", MAGIC, VERSION, len(g.tensors), len(g.metadata))]
    for key, value in g.metadata.items():
        out.append(_pack_value(STRING, key) + struct.pack("<I", g.types[key]) + _pack_value(g.types[key], value))
    offset = 0
    offsets = []
    for t in g.tensors.values():
        expected = _tensor_bytes(t.ne, t.type, t.name, path)
        if len(t.data) != expected:
            raise GgufError("tensor '%s': %d bytes, its shape and type need %d" % (t.name, len(t.data), expected))
        offsets.append(offset)
        out.append(_pack_value(STRING, t.name) + struct.pack("<I", len(t.ne)) +
                   struct.pack("<%dQ" % len(t.ne), *t.ne) + struct.pack("<IQ", t.type, offset))
        offset += (len(t.data) + alignment - 1) // alignment * alignment
    header = b"".join(out)
    header += b"\0" * ((alignment - len(header) % alignment) % alignment)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header)
        for t in g.tensors.values():
            f.write(t.data)
            f.write(b"\0" * ((alignment - len(t.data) % alignment) % alignment))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
