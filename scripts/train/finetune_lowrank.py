#!/usr/bin/python3
"""Continual training of the low-rank factors of a compressed RWKV-5.2 GGUF (issue 6, point 6).

    B=build/rwkv-edge
    $B compress models/default.gguf lr.gguf --calib build-train/train.txt --lowrank aware --rank-factor 8
    nice -n 19 /usr/bin/python3 scripts/train/finetune_lowrank.py lr.gguf --out lr-ft.gguf --run-dir build-train/ft-aware-f8
    nice -n 19 /usr/bin/python3 scripts/train/finetune_lowrank.py lr.gguf --out lr-ft.gguf --run-dir ... --resume
    /usr/bin/python3 scripts/train/finetune_lowrank.py models/default.gguf --eval-only     # any f32/f16 GGUF
    $B eval --model lr-ft.gguf --text-file build-train/heldout.txt

RWKV-Lite (rwkv-lite.md §3) replaces each projection W by two factors initialised from an SVD
and then continues training to win back the accuracy the truncation lost. Here the starting point
is the real post-training factorisation: a GGUF written by `rwkv-edge compress --lowrank svd|aware`
(every `P.weight` it factored is `P.lr_a` [r x in] and `P.lr_b` [out x r], y = lr_b (lr_a x)).
The script
1. loads every tensor of that GGUF into the PyTorch RWKV-5.2 (rwkv5.py), undoing the file's value
   transforms (time_decay is stored as exp(-exp(w)); vectors lose their unit dims), and puts a
   LowRankLinear with parameters lr_a, lr_b where the file has factors;
2. freezes everything except the factors;
3. trains them with AdamW on DATA/train.txt (train.py's data order: --batch-size parallel streams,
   one --ctx-len window per step, the RNN state carried across windows, seeded), linear warm-up
   and cosine decay, gradient clipping; progress lines; RUN/checkpoint.pt every --ckpt-every
   steps, on SIGINT/SIGTERM and at --max-minutes (exit status 3: continue with --resume);
4. writes OUT: the input GGUF with only the factor values replaced (same tensor types, so f16
   factors are rounded to f16; every other byte of tensor data unchanged) and metadata
   rwkv_edge.compress.finetune.* recording the run;
5. evaluates held-out perplexity before training and on OUT as written (eval.py's protocol, the
   one `rwkv-edge eval --text-file` implements), into RUN/result.json.

Only f32/f16 tensors can be loaded: compress without --int8, --head-clusters and --ffn-predict
(apply those to the fine-tuned file afterwards). RWKV-5.2 only (the trainer's model).
"""

import argparse
import fnmatch
import json
import math
import os
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train.py

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from data import file_tokens, token_cache, train_stream  # noqa: E402
from gguf_io import GgufError, read_gguf, write_gguf  # noqa: E402
from rwkv5 import RWKV5, Config, detach_state, sequence_nll  # noqa: E402
from train import Batches, fmt_time, lr_at, reset_state  # noqa: E402
from world_vocab import GreedyTokenizer, file_sha256, load_vocab  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "build-train"))
DEFAULT_MODEL = os.path.normpath(os.path.join(HERE, "..", "..", "models", "default.gguf"))

# Arguments that define the run; a resumed run takes them from the checkpoint.
RUN_ARGS = ("ctx_len", "batch_size", "steps", "lr", "lr_final", "warmup", "weight_decay", "beta1", "beta2",
            "adam_eps", "grad_clip", "reset_prob", "seed", "train_extra", "no_rebalance")


class LowRankLinear(nn.Module):
    """y = lr_b (lr_a x): lr_a [r, in], lr_b [out, r] (the GGUF's P.lr_a / P.lr_b)."""

    def __init__(self, a, b):
        super().__init__()
        self.lr_a = nn.Parameter(torch.as_tensor(a, dtype=torch.float32).clone())
        self.lr_b = nn.Parameter(torch.as_tensor(b, dtype=torch.float32).clone())

    def forward(self, x):
        return F.linear(F.linear(x, self.lr_a), self.lr_b)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", nargs="?", help="GGUF from `rwkv-edge compress --lowrank svd|aware` (f32/f16 tensors)")
    p.add_argument("--selftest", action="store_true",
                   help="check GGUF round trip, factor loading and export on MODEL (default models/default.gguf); exit")
    p.add_argument("--out", help="fine-tuned GGUF to write (required unless --eval-only)")
    p.add_argument("--eval-only", action="store_true", help="only print MODEL's held-out perplexity")
    p.add_argument("--data-dir", default=DEFAULT_DATA, help="train.txt, heldout.txt, vocab.txt")
    p.add_argument("--run-dir", default=None, help="checkpoint, log and result.json (default DATA/finetune)")
    p.add_argument("--resume", action="store_true", help="continue RUN/checkpoint.pt")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=120, help="optimizer steps; the LR schedule spans them")
    g.add_argument("--ctx-len", type=int, default=256, help="tokens per window (backprop length)")
    g.add_argument("--batch-size", type=int, default=4, help="parallel streams")
    g.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    g.add_argument("--lr-final", type=float, default=5e-5, help="learning rate at the last step (cosine)")
    g.add_argument("--warmup", type=int, default=15, help="linear warm-up steps")
    g.add_argument("--weight-decay", type=float, default=0.0, help="AdamW decoupled weight decay on the factors")
    g.add_argument("--beta1", type=float, default=0.9)
    g.add_argument("--beta2", type=float, default=0.99)
    g.add_argument("--adam-eps", type=float, default=1e-8)
    g.add_argument("--grad-clip", type=float, default=1.0, help="global gradient norm clip (0 = off)")
    g.add_argument("--reset-prob", type=float, default=0.125, help="per stream and window")
    g.add_argument("--seed", type=int, default=7, help="data offsets and resets (the base model used 42)")
    g.add_argument("--no-rebalance", action="store_true",
                   help="train the factors as stored (default: re-split each pair as the SVD of its product first, "
                        "so lr_a and lr_b have the same scale; see rebalance())")
    g.add_argument("--train-extra", default="",
                   help="comma-separated globs of further parameters to train (e.g. 'ln_out.*'); default: factors only")
    g = p.add_argument_group("run control (may change on --resume)")
    g.add_argument("--eval-tokens", type=int, default=0, help="first N held-out tokens (0 = all)")
    g.add_argument("--no-eval-before", action="store_true", help="skip the held-out evaluation before training")
    g.add_argument("--chunk-len", type=int, default=32, help="WKV chunk length (speed only)")
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--ckpt-every", type=int, default=50)
    g.add_argument("--max-minutes", type=float, default=0, help="checkpoint and stop after this long (0 = no limit)")
    args = p.parse_args(argv)
    if args.selftest:
        args.model = args.model or DEFAULT_MODEL
        return args
    if not args.model:
        p.error("MODEL is required")
    if not args.eval_only and not args.out:
        p.error("--out is required (or --eval-only)")
    for name in ("steps", "ctx_len", "batch_size", "ckpt_every", "log_every", "threads"):
        if getattr(args, name) < 1:
            p.error("--%s must be >= 1" % name.replace("_", "-"))
    if not (args.lr > 0 and args.lr_final >= 0):
        p.error("--lr must be > 0 and --lr-final >= 0")
    return args


# ---- GGUF <-> PyTorch ----------------------------------------------------------------------

def _meta_int(g, key):
    v = g.metadata.get(key)
    if not isinstance(v, int):
        raise GgufError("%s: metadata '%s' is missing or not an integer" % (g.path, key))
    return v


def _module(model, dotted):
    m = model
    for part in dotted.split("."):
        m = m[int(part)] if part.isdigit() else getattr(m, part)
    return m


def model_from_gguf(g):
    """RWKV5 holding every tensor of the GGUF g (our rwkvcpp value form, v5.2). Projections the
    file stores as lr_a/lr_b become LowRankLinear. Returns (model, list of factored base names)."""
    if g.metadata.get("general.architecture") != "rwkv_edge":
        raise GgufError("%s: general.architecture is '%s', expected 'rwkv_edge'" % (
            g.path, g.metadata.get("general.architecture")))
    if g.metadata.get("rwkv_edge.version") != "5.2":
        raise GgufError("%s: RWKV version %s; this trainer handles 5.2 only" % (g.path, g.metadata.get("rwkv_edge.version")))
    if g.metadata.get("rwkv_edge.value_form", "rwkvcpp") != "rwkvcpp":
        raise GgufError("%s: value form '%s', expected 'rwkvcpp'" % (g.path, g.metadata.get("rwkv_edge.value_form")))
    cfg = Config(n_vocab=_meta_int(g, "rwkv_edge.vocab_size"), n_embd=_meta_int(g, "rwkv_edge.embedding_length"),
                 n_layer=_meta_int(g, "rwkv_edge.block_count"), head_size=_meta_int(g, "rwkv_edge.head_size"),
                 n_ffn=_meta_int(g, "rwkv_edge.feed_forward_length"))
    gn_eps = g.metadata.get("rwkv_edge.group_norm_epsilon")
    if gn_eps is not None and abs(gn_eps - 64e-5) > 1e-9:
        raise GgufError("%s: GroupNorm epsilon %g; rwkv5.py uses 64e-5" % (g.path, gn_eps))
    if g.metadata.get("rwkv_edge.rescale_every", 0) != 0:
        raise GgufError("%s: rescale_every != 0 is not supported by rwkv5.py" % g.path)
    model = RWKV5(cfg)
    factored = sorted(n[:-len(".lr_a")] for n in g.tensors if n.endswith(".lr_a"))
    for base in factored:
        a, b = g.array(base + ".lr_a"), g.array(base + ".lr_b")
        dense = _module(model, base)
        if not isinstance(dense, nn.Linear):
            raise GgufError("%s: '%s' has low-rank factors but is not a projection of the model" % (g.path, base))
        out_f, in_f = dense.weight.shape
        if a.shape[1] != in_f or b.shape[0] != out_f or a.shape[0] != b.shape[1]:
            raise GgufError("%s: factors of '%s' are %s and %s; expected [r x %d] and [%d x r]" % (
                g.path, base, a.shape, b.shape, in_f, out_f))
        parent, _, leaf = base.rpartition(".")
        setattr(_module(model, parent), leaf, LowRankLinear(a, b))
    wanted = model.state_dict()
    state = {}
    for name, t in g.tensors.items():
        if name not in wanted:
            raise GgufError("%s: tensor '%s' is not part of a plain RWKV-5.2 with low-rank factors (compress "
                            "without --head-clusters / --ffn-predict to fine-tune)" % (g.path, name))
        v = g.array(name).astype(np.float64)
        if name.endswith("att.time_decay"):
            if not np.all((v > 0) & (v < 1)):
                raise GgufError("%s: '%s' has a decay outside (0, 1)" % (g.path, name))
            v = np.log(-np.log(v))  # the file holds exp(-exp(w)); the model's parameter is w
        if v.size != wanted[name].numel():
            raise GgufError("%s: '%s' has %d values, the model expects %s" % (g.path, name, v.size, tuple(wanted[name].shape)))
        state[name] = torch.from_numpy(v.astype(np.float32)).view(wanted[name].shape)
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise GgufError("%s: missing tensors: %s" % (g.path, ", ".join(missing[:6])))
    model.load_state_dict(state)
    return model, factored


@torch.no_grad()
def rebalance(model, factored):
    """Re-splits each factor pair as the plain-SVD split of its own product: with
    b a = U S V^T (rank r), a = sqrt(S) V^T and b = U sqrt(S). The product is unchanged (up to
    float64 rounding), but both factors get the same scale. Needed for activation-aware factors:
    compress stores lr_a = sqrt(S) V^T L^-1 and lr_b = U sqrt(S) with L the Cholesky factor of the
    calibration Gram matrix, so lr_a is ~100x smaller than lr_b on the default model and Adam's
    per-element steps (the same size for both) would wreck lr_a. Returns the largest relative
    change of a product (Frobenius)."""
    worst = 0.0
    for base in factored:
        m = _module(model, base)
        a, b = m.lr_a.double(), m.lr_b.double()
        prod = b @ a
        u, s, vt = torch.linalg.svd(prod, full_matrices=False)
        r = a.shape[0]
        root = torch.sqrt(s[:r])
        new_a, new_b = root[:, None] * vt[:r], u[:, :r] * root[None, :]
        worst = max(worst, float(torch.linalg.norm(new_b @ new_a - prod) / torch.linalg.norm(prod)))
        m.lr_a.copy_(new_a.float())
        m.lr_b.copy_(new_b.float())
    return worst


def export_gguf(g, model, factored, path, metadata):
    """Writes g with the factor values taken from model (stored in their GGUF types)."""
    sd = model.state_dict()
    for base in factored:
        for suffix in (".lr_a", ".lr_b"):
            g.set_array(base + suffix, sd[base + suffix].detach().numpy())
    for k, v in metadata.items():
        g.set_string("rwkv_edge.compress.finetune." + k, v)
    write_gguf(path, g)


# ---- data, evaluation -------------------------------------------------------------------------

def load_tokens(args, g):
    vocab_path = os.path.join(args.data_dir, "vocab.txt")
    tok = GreedyTokenizer(load_vocab(vocab_path))
    with open(vocab_path, encoding="utf-8") as f:
        if g.metadata.get("tokenizer.rwkv_edge.data", "").strip() != f.read().strip():
            print("warning: %s differs from the tokenizer inside %s; rwkv-edge eval tokenizes with the "
                  "latter" % (vocab_path, g.path), file=sys.stderr)
    heldout = token_cache("heldout-file", os.path.join(args.data_dir, "heldout.txt"), vocab_path, tok, file_tokens)
    if args.eval_tokens:
        heldout = heldout[:args.eval_tokens]
    train = None if args.eval_only else token_cache("train-stream", os.path.join(args.data_dir, "train.txt"),
                                                    vocab_path, tok, train_stream)
    return train, heldout


def evaluate(model, heldout, args, label):
    t0 = time.time()
    last = [t0]

    def progress(done, total):
        if time.time() - last[0] > 60:
            last[0] = time.time()
            print("  %s: %d/%d tokens" % (label, done, total), flush=True)
    total, count = sequence_nll(model, heldout, window=512, chunk_len=args.chunk_len, progress=progress)
    nll = total / count
    print("eval  %-7s | held-out mean NLL %.5f  perplexity %.3f  (%d predicted tokens, %.0f s)" % (
        label, nll, math.exp(nll), count, time.time() - t0), flush=True)
    return {"mean_nll": nll, "perplexity": math.exp(nll), "predicted_tokens": count}


# ---- training ---------------------------------------------------------------------------------

def trainable(model, factored, extra_globs):
    """Names of the parameters to train: every factor, plus those matching extra_globs."""
    globs = [s for s in extra_globs.split(",") if s]
    names = []
    for name, _ in model.named_parameters():
        if name.endswith((".lr_a", ".lr_b")) or any(fnmatch.fnmatchcase(name, pat) for pat in globs):
            names.append(name)
    return names


def save_checkpoint(path, model, opt, step, state, args, tokens_seen, names, source_sha, before):
    params = dict(model.named_parameters())
    ckpt = {"run_args": {k: getattr(args, k) for k in RUN_ARGS}, "step": step, "tokens_seen": tokens_seen,
            "trainable": {n: params[n].detach().clone() for n in names}, "optim": opt.state_dict(),
            "stream_state": state, "source_sha256": source_sha, "before": before}
    tmp = path + ".tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def run(args):
    torch.set_num_threads(args.threads)
    try:
        g = read_gguf(args.model)
        model, factored = model_from_gguf(g)
    except (ValueError, OSError, struct.error) as e:  # GgufError and bad UTF-8 are ValueErrors
        print("finetune_lowrank: %s" % e, file=sys.stderr)
        return 1
    train_tokens, heldout = load_tokens(args, g)
    cfg = model.cfg
    print("model: %s, RWKV-5.2 L%d C%d F%d V%d, %d factored projections%s" % (
        args.model, cfg.n_layer, cfg.n_embd, cfg.n_ffn, cfg.n_vocab, len(factored),
        " (ranks %s)" % sorted({int(g.tensor(b + ".lr_a").shape[0]) for b in factored}) if factored else ""))
    if args.eval_only:
        evaluate(model, heldout, args, "model")
        return 0
    if not factored:
        print("finetune_lowrank: %s has no low-rank factors (compress it with --lowrank svd|aware)" % args.model,
              file=sys.stderr)
        return 1

    run_dir = args.run_dir or os.path.join(args.data_dir, "finetune")
    os.makedirs(run_dir, exist_ok=True)
    ckpt_path = os.path.join(run_dir, "checkpoint.pt")
    source_sha = file_sha256(args.model)
    ckpt = None
    if args.resume:
        if not os.path.exists(ckpt_path):
            print("finetune_lowrank: --resume: %s does not exist" % ckpt_path, file=sys.stderr)
            return 1
        ckpt = torch.load(ckpt_path, map_location="cpu")
        if ckpt["source_sha256"] != source_sha:
            print("finetune_lowrank: %s was started from another model file (sha256 %s...)" % (
                ckpt_path, ckpt["source_sha256"][:12]), file=sys.stderr)
            return 1
        changed = [k for k in RUN_ARGS if getattr(args, k) != ckpt["run_args"].get(k, False)]
        for k in RUN_ARGS:
            setattr(args, k, ckpt["run_args"].get(k, False))
        if changed:
            print("resume: using the checkpoint's %s" % ", ".join("%s=%s" % (k, getattr(args, k)) for k in changed))
    elif os.path.exists(ckpt_path):
        print("finetune_lowrank: %s exists; pass --resume to continue it, or remove it" % ckpt_path, file=sys.stderr)
        return 1

    names = trainable(model, factored, args.train_extra)
    params = dict(model.named_parameters())
    for name, p in params.items():
        p.requires_grad_(name in names)
    n_train = sum(params[n].numel() for n in names)
    print("trainable: %d tensors, %d parameters (%.1f%% of %d)" % (
        len(names), n_train, 100.0 * n_train / sum(p.numel() for p in params.values()),
        sum(p.numel() for p in params.values())))
    opt = torch.optim.AdamW([params[n] for n in names], lr=args.lr, betas=(args.beta1, args.beta2),
                            eps=args.adam_eps, weight_decay=args.weight_decay)
    torch.manual_seed(args.seed)
    batches = Batches(train_tokens, args)
    step, tokens_seen, state, before = 0, 0, model.zero_state(args.batch_size), None
    if ckpt is not None:
        with torch.no_grad():
            for n in names:
                params[n].copy_(ckpt["trainable"][n])
        opt.load_state_dict(ckpt["optim"])
        step, tokens_seen, state, before = ckpt["step"], ckpt["tokens_seen"], ckpt["stream_state"], ckpt["before"]
        print("resume: step %d of %d" % (step, args.steps))
        del ckpt
    else:
        if not args.no_eval_before:
            before = evaluate(model, heldout, args, "before")
        if not args.no_rebalance:
            print("rebalance: factors re-split as the SVD of their products (largest relative product change %.1e)"
                  % rebalance(model, factored))
    print("data: %d train tokens; %d steps of %dx%d = %d tokens (%.2f epochs)" % (
        len(train_tokens), args.steps, args.batch_size, args.ctx_len, args.steps * args.batch_size * args.ctx_len,
        args.steps * args.batch_size * args.ctx_len / len(train_tokens)), flush=True)

    log = open(os.path.join(run_dir, "log.jsonl"), "a", encoding="utf-8")
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    model.train()
    t_start = time.time()
    start_step = step
    t_log, loss_sum, loss_n = time.time(), 0.0, 0
    tok_per_step = args.batch_size * args.ctx_len
    trained = [params[n] for n in names]
    while step < args.steps:
        x, y, reset = batches.get(step)
        state = reset_state(state, reset)
        lr = lr_at(step, args)
        for group in opt.param_groups:
            group["lr"] = lr
        logits, new_state = model(x, state, chunk_len=args.chunk_len)
        loss = F.cross_entropy(logits.view(-1, cfg.n_vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trained, args.grad_clip))
        else:
            grad_norm = float("nan")
        opt.step()
        state = detach_state(new_state)
        step += 1
        tokens_seen += tok_per_step
        loss_sum += float(loss)
        loss_n += 1
        if step % args.log_every == 0 or step == args.steps:
            now = time.time()
            rate = loss_n * tok_per_step / (now - t_log)
            eta = (now - t_start) / (step - start_step) * (args.steps - step)
            print("step %4d/%d | loss %.4f | lr %.2e | |g| %.3f | %5.0f tok/s | elapsed %s | ETA %s" % (
                step, args.steps, loss_sum / loss_n, lr, grad_norm, rate, fmt_time(now - t_start), fmt_time(eta)),
                flush=True)
            log.write(json.dumps({"step": step, "loss": loss_sum / loss_n, "lr": lr, "grad_norm": grad_norm,
                                  "tok_per_s": rate, "tokens": tokens_seen, "time": now}) + "\n")
            log.flush()
            t_log, loss_sum, loss_n = now, 0.0, 0
        out_of_time = args.max_minutes and time.time() - t_start > args.max_minutes * 60
        if step % args.ckpt_every == 0 or step == args.steps or stop["signal"] or out_of_time:
            save_checkpoint(ckpt_path, model, opt, step, state, args, tokens_seen, names, source_sha, before)
        if (stop["signal"] or out_of_time) and step < args.steps:
            print("stopped at step %d (%s); checkpoint %s; continue with --resume" % (
                step, "signal %d" % stop["signal"] if stop["signal"] else "--max-minutes", ckpt_path))
            return 3

    if any(not n.endswith((".lr_a", ".lr_b")) for n in names):
        # Only factor values are written back into the GGUF; anything else trained would be lost.
        extra = [n for n in names if not n.endswith((".lr_a", ".lr_b"))]
        for n in extra:
            arr = params[n].detach().numpy()
            if n.endswith("att.time_decay"):
                arr = np.exp(-np.exp(arr.astype(np.float64)))
            g.set_array(n, arr.reshape(g.tensor(n).shape))
    meta = {"source": os.path.basename(args.model), "source_sha256": source_sha, "steps": str(step),
            "tokens": str(tokens_seen), "ctx_len": str(args.ctx_len), "batch_size": str(args.batch_size),
            "lr": "%g->%g" % (args.lr, args.lr_final), "warmup": str(args.warmup),
            "weight_decay": str(args.weight_decay), "seed": str(args.seed), "data": "train.txt",
            "rebalance": "no" if args.no_rebalance else "svd",
            "trained": "lr_a,lr_b" + ("," + args.train_extra if args.train_extra else "")}
    export_gguf(g, model, factored, args.out, meta)
    print("wrote %s" % args.out, flush=True)

    # Evaluate the file as written (f16 factors), which is what rwkv-edge runs.
    after_model, _ = model_from_gguf(read_gguf(args.out))
    after = evaluate(after_model, heldout, args, "after")
    result = {"model": os.path.abspath(args.model), "out": os.path.abspath(args.out), "steps": step,
              "tokens": tokens_seen, "heldout_tokens": int(len(heldout)), "before": before, "after": after,
              "run_args": {k: getattr(args, k) for k in RUN_ARGS}}
    with open(os.path.join(run_dir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    if before:
        print("held-out perplexity %.3f -> %.3f" % (before["perplexity"], after["perplexity"]))
    return 0


def selftest(path):
    """GGUF read/write round trip, full-rank factors == dense, time_decay inversion, export of
    changed factors. Uses the real model file; returns 0 if every check passes."""
    import tempfile
    from gguf_io import Tensor
    torch.manual_seed(1)
    failures = []

    def check(name, got, limit):
        ok = got <= limit
        print("  %-64s %.3e  (<= %.0e) %s" % (name, got, limit, "ok" if ok else "FAIL"))
        if not ok:
            failures.append(name)

    g = read_gguf(path)
    print("selftest on %s" % path)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rt.gguf")
        write_gguf(out, g)
        with open(out, "rb") as a, open(path, "rb") as b:
            check("GGUF read + write: files differ", float(a.read() != b.read()), 0)
        dense, _ = model_from_gguf(g)
        decay = g.array("blocks.0.att.time_decay").reshape(-1).astype(np.float64)
        back = torch.exp(-torch.exp(dense.blocks[0].att.time_decay.detach().double())).reshape(-1).numpy()
        check("time_decay: max relative |exp(-exp(w)) - file|", float(np.max(np.abs(back - decay) / decay)), 1e-6)
        # Full-rank factors (f32) of two projections must give the dense logits.
        bases = ["blocks.0.att.key", "blocks.%d.ffn.receptance" % (dense.cfg.n_layer - 1)]
        for base in bases:
            if base + ".weight" not in g.tensors:
                continue
            w = g.array(base + ".weight").astype(np.float64)
            u, s, vt = np.linalg.svd(w)
            a = (np.sqrt(s)[:, None] * vt).astype(np.float32)
            b = (u * np.sqrt(s)).astype(np.float32)
            del g.tensors[base + ".weight"]
            g.tensors[base + ".lr_a"] = Tensor(base + ".lr_a", [w.shape[1], len(s)], 0, a.tobytes())
            g.tensors[base + ".lr_b"] = Tensor(base + ".lr_b", [len(s), w.shape[0]], 0, b.tobytes())
        factored_model, factored = model_from_gguf(g)
        check("factored projections loaded (want %d): missing" % len(bases), float(len(bases) - len(factored)), 0)
        idx = torch.randint(0, dense.cfg.n_vocab, (1, 48))
        with torch.no_grad():
            ref, _ = dense(idx)
            got, _ = factored_model(idx)
        # f32 SVD of f16 weights reconstructs them to ~1e-7; through 6 layers logits agree to ~1e-5.
        check("full-rank factors: max|logits - dense logits|", float((got - ref).abs().max()), 1e-4)
        # Rebalancing a deliberately unbalanced pair keeps its product and equalises the scales.
        lin = factored_model.blocks[0].att.key
        with torch.no_grad():
            lin.lr_a.mul_(0.01)
            lin.lr_b.mul_(100.0)
            prod = (lin.lr_b.double() @ lin.lr_a.double()).clone()
        rebalance(factored_model, factored)
        with torch.no_grad():
            change = float(torch.linalg.norm(lin.lr_b.double() @ lin.lr_a.double() - prod) / torch.linalg.norm(prod))
            ratio = float(torch.linalg.norm(lin.lr_b) / torch.linalg.norm(lin.lr_a))
        check("rebalance: relative change of the product", change, 1e-6)
        check("rebalance: | ||lr_b|| / ||lr_a|| - 1 |", abs(ratio - 1.0), 1e-4)
        with torch.no_grad():
            factored_model.blocks[0].att.key.lr_a.mul_(1.5)
        out = os.path.join(tmp, "ft.gguf")
        export_gguf(g, factored_model, factored, out, {"steps": "0"})
        g2 = read_gguf(out)
        want = factored_model.blocks[0].att.key.lr_a.detach().numpy()
        check("export: max|written lr_a - model lr_a|", float(np.abs(g2.array("blocks.0.att.key.lr_a") - want).max()), 0)
        check("export: metadata rwkv_edge.compress.finetune.steps missing",
              float(g2.metadata.get("rwkv_edge.compress.finetune.steps") != "0"), 0)
        unchanged = [n for n in g.tensors if not n.endswith((".lr_a", ".lr_b"))]
        check("export: other tensors changed", float(sum(g2.tensors[n].data != g.tensors[n].data for n in unchanged)), 0)
    print("selftest: %d failed" % len(failures) if failures else "selftest: all passed")
    return 1 if failures else 0


def main(argv=None):
    args = parse_args(argv)
    if args.selftest:
        torch.set_num_threads(args.threads)
        return selftest(args.model)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
