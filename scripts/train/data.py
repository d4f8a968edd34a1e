"""Token streams for training and evaluation, cached as .npy next to the corpus.

    tok = GreedyTokenizer(load_vocab("build-train/vocab.txt"))
    train = token_cache("train-stream", "build-train/train.txt", "build-train/vocab.txt", tok, train_stream)
    held = token_cache("heldout-file", "build-train/heldout.txt", "build-train/vocab.txt", tok, file_tokens)

Two tokenizations, on purpose:
- train_stream: documents (separated by an empty line in train.txt) are encoded one by one as
  `document + "\\n\\n"`, each followed by id 0 (end-of-text), so the model learns to end a text.
- file_tokens: the whole file encoded in one go, no id 0: the held-out protocol (eval.py), which
  the C++ engine reproduces by tokenizing heldout.txt itself.
"""

import hashlib
import os

import numpy as np

from world_vocab import file_sha256

DOC_SEPARATOR = "\n\n"


def read_docs(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.endswith("\n"):
        text = text[:-1]
    return [d for d in text.split(DOC_SEPARATOR) if d]


def train_stream(tokenizer, path):
    out = []
    for doc in read_docs(path):
        out.extend(tokenizer.encode((doc + DOC_SEPARATOR).encode("utf-8")))
        out.append(0)
    return out


def file_tokens(tokenizer, path):
    with open(path, "rb") as f:
        return tokenizer.encode(f.read())


def token_cache(name, text_path, vocab_path, tokenizer, encode_fn, cache_dir=None):
    """Returns the tokens of text_path as a uint16 array, computing them once per (text, vocab)."""
    cache_dir = cache_dir or os.path.dirname(os.path.abspath(text_path))
    key = hashlib.sha256((file_sha256(text_path) + file_sha256(vocab_path) + name).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, "%s.%s.npy" % (name, key))
    if os.path.exists(path):
        return np.load(path)
    ids = encode_fn(tokenizer, text_path)
    if max(ids) >= 65536:
        raise ValueError("token id %d does not fit uint16" % max(ids))
    arr = np.asarray(ids, dtype=np.uint16)
    tmp = path + ".tmp.npy"
    np.save(tmp, arr)
    os.replace(tmp, path)
    return arr
