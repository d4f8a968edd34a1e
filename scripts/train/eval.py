#!/usr/bin/python3
"""Held-out evaluation of a trained model: the reference number for the C++ engine (issue #4).

    /usr/bin/python3 scripts/train/eval.py build-train/run/model.safetensors --data-dir build-train

Protocol (the C++ engine's held-out perplexity must match this within 1 %):
1. Read DATA/heldout.txt as bytes and tokenize the whole file in one go with the sub-vocab
   DATA/vocab.txt (greedy longest match, tokenizers.md §2.2). No id 0 is inserted anywhere.
2. Start from a fresh (zero) state and feed the n tokens in order. Here they go in windows of
   --window tokens carrying the state across windows, which gives the same result as feeding
   them one by one (train.py --selftest checks chunked == sequential).
3. For t = 0..n-2 take -ln softmax(logits_t)[token_{t+1}]: the NLL of each token given all the
   tokens before it. Mean NLL = their sum / (n-1); perplexity = exp(mean NLL). Computed in f32,
   accumulated in f64.
Also printed: bits per byte (sum NLL / ln 2 / bytes of the evaluated tokens), and the unigram baseline: token
frequencies of the training stream (train.py's tokenization of DATA/train.txt) with add-one
smoothing over all V ids, p(x) = (count(x) + 1) / (N + V), scored on the same n-1 held-out tokens.
"""

import argparse
import json
import math
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

from data import file_tokens, token_cache, train_stream  # noqa: E402
from rwkv5 import RWKV5, Config, sequence_nll  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402
from world_vocab import GreedyTokenizer, file_sha256, load_vocab  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "build-train"))


def load_model(path):
    """A model from BlinkDL-named safetensors (F32/F16/BF16) or a train.py checkpoint."""
    if path.endswith(".pt"):
        ckpt = torch.load(path, map_location="cpu")
        model = RWKV5(Config(**ckpt["config"]))
        model.load_state_dict(ckpt["model"])
        return model
    tensors, _ = read_safetensors(path)
    n_vocab, n_embd = tensors["emb.weight"].shape
    n_layer = 1 + max(int(m.group(1)) for m in (re.match(r"blocks\.(\d+)\.", n) for n in tensors) if m)
    n_head, head_size = tensors["blocks.0.att.time_decay"].shape
    cfg = Config(n_vocab=n_vocab, n_embd=n_embd, n_layer=n_layer, head_size=head_size,
                 n_ffn=tensors["blocks.0.ffn.key.weight"].shape[0])
    model = RWKV5(cfg)
    state = {n: torch.from_numpy(np.array(a, dtype=np.float32)) for n, a in tensors.items()}
    model.load_state_dict(state)
    return model


def unigram_nll(train_tokens, heldout_tokens, n_vocab):
    counts = np.bincount(train_tokens.astype(np.int64), minlength=n_vocab).astype(np.float64)
    logp = np.log(counts + 1.0) - math.log(counts.sum() + n_vocab)
    predicted = heldout_tokens[1:].astype(np.int64)
    return float(-logp[predicted].sum()), len(predicted)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="model.safetensors (BlinkDL names) or a train.py checkpoint.pt")
    p.add_argument("--data-dir", default=DEFAULT_DATA)
    p.add_argument("--vocab", default=None, help="default DATA/vocab.txt")
    p.add_argument("--heldout", default=None, help="default DATA/heldout.txt")
    p.add_argument("--train", default=None, help="for the unigram baseline (default DATA/train.txt)")
    p.add_argument("--window", type=int, default=512, help="tokens per forward call (result does not depend on it)")
    p.add_argument("--chunk-len", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=0,
                   help="use only the first N tokens of the held-out tokenization (0 = all; quick checks)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    vocab_path = args.vocab or os.path.join(args.data_dir, "vocab.txt")
    heldout_path = args.heldout or os.path.join(args.data_dir, "heldout.txt")
    train_path = args.train or os.path.join(args.data_dir, "train.txt")

    tok = GreedyTokenizer(load_vocab(vocab_path))
    heldout = np.asarray(file_tokens(tok, heldout_path), dtype=np.int64)
    if args.max_tokens:
        heldout = heldout[:args.max_tokens]
    model = load_model(args.model)
    if max(tok.vocab) >= model.cfg.n_vocab:
        print("eval: vocab has id %d but the model only %d" % (max(tok.vocab), model.cfg.n_vocab), file=sys.stderr)
        return 1
    # Bytes of the scored text: the whole file, or what the first --max-tokens tokens cover.
    n_bytes = len(tok.decode(heldout.tolist()))
    print("held-out: %s, %d bytes, %d tokens (first ids %s)" % (
        heldout_path, n_bytes, len(heldout), " ".join(str(i) for i in heldout[:8])))

    t0 = time.time()
    last = [t0]

    def progress(done, total):
        if time.time() - last[0] > 30:
            last[0] = time.time()
            print("  %d/%d tokens" % (done, total), flush=True)
    total, count = sequence_nll(model, heldout, window=args.window, chunk_len=args.chunk_len, progress=progress)
    nll = total / count
    result = {"model": os.path.abspath(args.model), "heldout_sha256": file_sha256(heldout_path),
              "vocab_sha256": file_sha256(vocab_path), "heldout_bytes": n_bytes, "max_tokens": args.max_tokens, "heldout_tokens": len(heldout),
              "predicted_tokens": count, "mean_nll": nll, "perplexity": math.exp(nll),
              "bits_per_byte": total / math.log(2) / n_bytes, "seconds": time.time() - t0}
    print("model:   mean NLL %.5f  perplexity %.3f  bits/byte %.4f  (%d predicted tokens, %.0f s)" % (
        nll, math.exp(nll), result["bits_per_byte"], count, result["seconds"]))

    if os.path.exists(train_path):
        train_tokens = token_cache("train-stream", train_path, vocab_path, tok, train_stream)
        u_total, u_count = unigram_nll(train_tokens, heldout, model.cfg.n_vocab)
        result.update({"unigram_mean_nll": u_total / u_count, "unigram_perplexity": math.exp(u_total / u_count)})
        print("unigram: mean NLL %.5f  perplexity %.3f  (train counts + 1 over V = %d)" % (
            u_total / u_count, math.exp(u_total / u_count), model.cfg.n_vocab))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
