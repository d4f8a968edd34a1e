#!/usr/bin/python3
"""Output-gradient statistics of an RWKV-5.2 GGUF for `rwkv-edge compress --lowrank fisher`.

    /usr/bin/python3 scripts/train/grad_stats.py models/default.gguf --calib build-train/calib-spread.txt \\
        --out build-train/default.gradstats
    build/rwkv-edge compress models/default.gguf lr.gguf --calib build-train/calib-spread.txt \\
        --lowrank fisher --grad-stats build-train/default.gradstats

Activation-aware low-rank (SVD-LLM whitening) minimises each projection's output error
E||(W - W') x||^2: every output channel counts the same. The loss does not see them the same:
the value projection's error goes through the WKV sum, a GroupNorm, the gate and the output
projection before it reaches the logits. The loss change of a small ΔW is, to second order,
E[(g^T ΔW x)^2] with g = dLoss/dy the gradient at the projection's output; with the Kronecker
(K-FAC) approximation that is tr(G_out ΔW G_in ΔW^T), G_out = Σ g g^T, G_in = Σ x x^T. compress
computes G_in itself (its calibration run); this script computes G_out, which needs gradients,
hence PyTorch and the trainer's model (rwkv5.py, RWKV-5.2 only).

It feeds the first --calib-tokens tokens of the calibration text (tokenized with the tokenizer
inside MODEL, as compress does) in windows of --window tokens, carrying the RNN state, and
back-propagates the summed next-token NLL of each window. For every 2-D projection of the blocks
(att.receptance/key/value/gate/output, ffn.key/receptance/value) it accumulates G_out in float64.

Output format (little-endian), read by engine/compress/grad_stats.cpp:
    8 bytes  magic "RWKVEGS1"
    u64      positions whose next-token loss was back-propagated (N - 1 of the N tokens fed)
    u32      entry count, then per entry:
      u32 name length, name (UTF-8, the base name, e.g. "blocks.3.att.value")
      u32 n (the projection's output width)
      f64 Σ W^2 of the projection the statistics belong to (compress checks it, so statistics
          of another model are refused)
      f32[n*n] G_out, row-major
"""

import argparse
import math
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from finetune_lowrank import _module, model_from_gguf  # noqa: E402
from gguf_io import GgufError, read_gguf  # noqa: E402
from world_vocab import GreedyTokenizer, parse_vocab_line  # noqa: E402

MAGIC = b"RWKVEGS1"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="dense RWKV-5.2 GGUF (f32/f16 tensors), e.g. models/default.gguf")
    p.add_argument("--calib", required=True, help="calibration text (the same file compress gets; never held-out)")
    p.add_argument("--calib-tokens", type=int, default=16384, help="first N tokens of the calibration text")
    p.add_argument("--out", required=True, help="statistics file to write")
    p.add_argument("--window", type=int, default=512, help="tokens per backward pass (the state is carried)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.calib_tokens < 2 or args.window < 1 or args.threads < 1:
        p.error("--calib-tokens must be >= 2, --window and --threads >= 1")
    return args


def tokenizer_of(g):
    if g.metadata.get("tokenizer.rwkv_edge.kind") != "world":
        raise GgufError("%s: tokenizer kind '%s'; this script tokenizes World vocabularies only" % (
            g.path, g.metadata.get("tokenizer.rwkv_edge.kind")))
    vocab = {}
    for lineno, line in enumerate(g.metadata.get("tokenizer.rwkv_edge.data", "").splitlines(), 1):
        if line.strip():
            token_id, value = parse_vocab_line(line, g.path + ":tokenizer", lineno)
            vocab[token_id] = value
    if not vocab:
        raise GgufError("%s: no tokenizer inside the file" % g.path)
    return GreedyTokenizer(vocab)


def projections(model):
    names = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and name.startswith("blocks."):
            names.append(name)
    return names


def run(args):
    torch.set_num_threads(args.threads)
    try:
        g = read_gguf(args.model)
        model, factored = model_from_gguf(g)
        if factored:
            raise GgufError("%s: has low-rank factors; give the dense model" % args.model)
        tok = tokenizer_of(g)
        with open(args.calib, "rb") as f:
            tokens = tok.encode(f.read())[:args.calib_tokens]
    except (ValueError, OSError, struct.error) as e:
        print("grad_stats: %s" % e, file=sys.stderr)
        return 1
    if len(tokens) < 2:
        print("grad_stats: %s: fewer than 2 tokens" % args.calib, file=sys.stderr)
        return 1
    names = projections(model)
    acc = {}
    hooks = []
    for name in names:
        def forward_hook(mod, inp, out, name=name):
            def grad_hook(grad):
                gr = grad.detach().reshape(-1, grad.shape[-1]).double()
                acc[name] = acc.get(name, 0) + gr.T @ gr
            out.register_hook(grad_hook)
        hooks.append(_module(model, name).register_forward_hook(forward_hook))
    model.eval()
    ids = torch.tensor(tokens, dtype=torch.long).view(1, -1)
    n = ids.shape[1]
    state = None
    t0 = time.time()
    total_nll = 0.0
    for begin in range(0, n - 1, args.window):
        end = min(begin + args.window, n - 1)
        logits, state = model(ids[:, begin:end], state)
        loss = F.cross_entropy(logits[0], ids[0, begin + 1:end + 1], reduction="sum")
        model.zero_grad(set_to_none=True)
        loss.backward()  # the hooks collect dLoss/dy; the weight gradients are dropped
        total_nll += float(loss)
        state = [tuple(t.detach() for t in layer) for layer in state]
        print("\r  %d/%d tokens  %.0f s" % (end, n - 1, time.time() - t0), end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for h in hooks:
        h.remove()
    missing = [nm for nm in names if nm not in acc]
    if missing:
        print("grad_stats: no gradient reached %s" % ", ".join(missing[:4]), file=sys.stderr)
        return 1
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<QI", n - 1, len(names)))
        for name in names:
            w = _module(model, name).weight.detach().double()
            gm = acc[name].numpy().astype("<f4")
            raw = name.encode("utf-8")
            f.write(struct.pack("<I", len(raw)) + raw)
            f.write(struct.pack("<Id", gm.shape[0], float((w * w).sum())))
            f.write(np.ascontiguousarray(gm).tobytes())
    os.replace(tmp, args.out)
    print("wrote %s: %d projections, %d tokens, calibration perplexity %.3f, %.0f s" % (
        args.out, len(names), n - 1, math.exp(total_nll / (n - 1)), time.time() - t0))
    return 0


def main(argv=None):
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
