"""RWKV World vocabulary files and the greedy longest-match tokenizer (tokenizers.md §2).

    vocab = load_vocab("/work/shared/tokenizers/rwkv_vocab_v20230424.txt")   # {id: bytes}
    tok = GreedyTokenizer(vocab)
    ids = tok.encode("Hello world".encode("utf-8"))                           # [33155, 40213]
    text = tok.decode(ids)                                                    # b"Hello world"

The file format is one token per line, `<id> <python literal> <byte_len>`: the id is split at the
first space, the length at the last one, and the middle is `repr(str)` when the token bytes are
valid UTF-8 and `repr(bytes)` otherwise (true for all 65,529 lines of the original file). Id 0 is
not in the file: it is end-of-text. Encoding is the engine's rule, reproduced exactly: at each
position take the longest vocabulary entry that is a prefix of the remaining bytes.
"""

import ast
import hashlib
import json
import os


class VocabError(Exception):
    pass


def parse_vocab_line(line, path="<vocab>", lineno=0):
    """Returns (id, bytes) for one `<id> <literal> <byte_len>` line."""
    line = line.rstrip("\n")
    first, last = line.find(" "), line.rfind(" ")
    if first <= 0 or last <= first:
        raise VocabError("%s:%d: expected '<id> <literal> <byte_len>'" % (path, lineno))
    try:
        token_id = int(line[:first])
        byte_len = int(line[last + 1:])
        # literal_eval only evaluates literals, never code.
        value = ast.literal_eval(line[first + 1:last])
    except (ValueError, SyntaxError) as e:
        raise VocabError("%s:%d: %s" % (path, lineno, e))
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes):
        raise VocabError("%s:%d: literal is neither str nor bytes" % (path, lineno))
    if len(value) != byte_len:
        raise VocabError("%s:%d: literal has %d bytes, line says %d" % (path, lineno, len(value), byte_len))
    return token_id, value


def load_vocab(path):
    """Reads a World-format vocab file. Returns {id: bytes}; ids >= 1, byte strings distinct."""
    vocab = {}
    seen = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            token_id, value = parse_vocab_line(line, path, lineno)
            if token_id <= 0 or token_id in vocab:
                raise VocabError("%s:%d: id %d is 0 or repeated" % (path, lineno, token_id))
            if value in seen:
                raise VocabError("%s:%d: byte string %r repeated" % (path, lineno, value))
            vocab[token_id] = value
            seen.add(value)
    return vocab


def format_vocab_line(token_id, value):
    """The World file's line for a token: str repr when valid UTF-8, bytes repr otherwise."""
    try:
        literal = repr(value.decode("utf-8"))
    except UnicodeDecodeError:
        literal = repr(value)
    return "%d %s %d\n" % (token_id, literal, len(value))


def write_vocab(path, vocab):
    """Writes {id: bytes} (ids 1..N-1) in World format, LF line ends, atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for token_id in sorted(vocab):
            f.write(format_vocab_line(token_id, vocab[token_id]))
    os.replace(tmp, path)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class GreedyTokenizer:
    """Greedy longest match over a byte trie (nested dicts: byte -> node; key -1 holds the id)."""

    def __init__(self, vocab):
        self.vocab = dict(vocab)
        self.root = {}
        for token_id, value in self.vocab.items():
            node = self.root
            for b in value:
                node = node.setdefault(b, {})
            node[-1] = token_id
        for b in range(256):
            if -1 not in self.root.get(b, {}):
                raise VocabError("single byte 0x%02x is not a token; greedy encoding needs all 256" % b)

    def encode(self, data):
        """bytes -> list of ids. Every byte string is encodable (all single bytes are tokens)."""
        root = self.root
        out = []
        append = out.append
        i, n = 0, len(data)
        while i < n:
            node = root[data[i]]
            best_id, best_end = node[-1], i + 1
            j = i + 1
            while j < n:
                node = node.get(data[j])
                if node is None:
                    break
                j += 1
                token_id = node.get(-1)
                if token_id is not None:
                    best_id, best_end = token_id, j
            append(best_id)
            i = best_end
        return out

    def decode(self, ids):
        """ids -> bytes; id 0 (end-of-text) decodes to nothing."""
        return b"".join(self.vocab[i] for i in ids if i != 0)


def check_golden(tokenizer, golden_path):
    """Compares encode() with the golden vectors. Returns (passed, failed, first failure text)."""
    with open(golden_path, encoding="utf-8") as f:
        cases = json.load(f)
    passed, failed, first = 0, 0, None
    for case in cases:
        got = tokenizer.encode(case["text"].encode("utf-8"))
        if got == case["ids"] and tokenizer.decode(got) == case["text"].encode("utf-8"):
            passed += 1
        else:
            failed += 1
            if first is None:
                first = "%r: got %s, want %s" % (case["text"][:40], got[:12], case["ids"][:12])
    return passed, failed, first
