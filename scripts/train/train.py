#!/usr/bin/python3
"""Trains a small RWKV-5.2 on the project corpus, on CPU (issue #4).

    /usr/bin/python3 scripts/train/train.py --selftest
    nice -n 10 /usr/bin/python3 scripts/train/train.py --data-dir build-train --steps 1500
    nice -n 10 /usr/bin/python3 scripts/train/train.py --data-dir build-train --resume   # after a stop

Reads DATA/train.txt, DATA/heldout.txt, DATA/vocab.txt (prepare_corpus.py, build_vocab.py);
writes RUN/checkpoint.pt (every --ckpt-every steps, on SIGINT/SIGTERM and at --max-minutes),
RUN/train-log.jsonl (one JSON object per logged step / evaluation) and, when the last step is
done, RUN/model.safetensors (export.py). RUN defaults to DATA/run.

Data order (deterministic for a seed): the training token stream (documents + "\\n\\n", each
followed by id 0) is read as --batch-size parallel streams, each a contiguous slice of the
corpus, one window of --ctx-len tokens per step; the RNN state is carried from one window to the
next (truncated backpropagation through time), so the model learns the long-sequence use that
the held-out protocol (eval.py) measures. Each window a stream's state is reset to zero with
probability --reset-prob, so it also learns to start from a fresh state (what a server prompt
does). Each epoch starts the streams at a new seeded offset.
"""

import argparse
import json
import math
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The machine is shared: OpenMP threads that spin while waiting (the default) lose their time
# slices to other work and made a step 2-4x slower in measurements here. Must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import rwkv5  # noqa: E402
from data import file_tokens, token_cache, train_stream  # noqa: E402
from export import export_model  # noqa: E402
from rwkv5 import RWKV5, Config, detach_state, sequence_nll, wkv_chunked, wkv_sequential  # noqa: E402
from world_vocab import GreedyTokenizer, load_vocab  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "build-train"))

# Arguments that define the run; a resumed run takes them from the checkpoint.
RUN_ARGS = ("n_layer", "n_embd", "head_size", "n_ffn", "ctx_len", "batch_size", "steps", "lr", "lr_final",
            "warmup", "weight_decay", "beta1", "beta2", "adam_eps", "grad_clip", "reset_prob", "seed", "bf16")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--selftest", action="store_true", help="check the chunked WKV, state carry and export; exit")
    p.add_argument("--bench", type=int, default=0, metavar="N", help="time N training steps and exit (no files)")
    p.add_argument("--data-dir", default=DEFAULT_DATA, help="train.txt, heldout.txt, vocab.txt")
    p.add_argument("--vocab", default=None, help="sub-vocab (default DATA/vocab.txt)")
    p.add_argument("--run-dir", default=None, help="checkpoint, log and export (default DATA/run)")
    p.add_argument("--resume", action="store_true", help="continue RUN/checkpoint.pt")
    p.add_argument("--export", default=None, help="safetensors written at the end (default RUN/model.safetensors)")
    g = p.add_argument_group("model")
    g.add_argument("--n-layer", type=int, default=6)
    g.add_argument("--n-embd", type=int, default=384)
    g.add_argument("--head-size", type=int, default=64)
    g.add_argument("--n-ffn", type=int, default=0, help="0 = 3.5 * n_embd rounded down to a multiple of 32")
    g = p.add_argument_group("training")
    g.add_argument("--ctx-len", type=int, default=512, help="tokens per window (backprop length)")
    g.add_argument("--batch-size", type=int, default=8, help="parallel streams")
    g.add_argument("--steps", type=int, default=1500, help="optimizer steps; the LR schedule spans them")
    g.add_argument("--lr", type=float, default=1.5e-3, help="peak learning rate")
    g.add_argument("--lr-final", type=float, default=1e-4, help="learning rate at the last step (cosine)")
    g.add_argument("--warmup", type=int, default=50, help="linear warm-up steps")
    g.add_argument("--weight-decay", type=float, default=0.01, help="AdamW decay on matrices only")
    g.add_argument("--beta1", type=float, default=0.9)
    g.add_argument("--beta2", type=float, default=0.99)
    g.add_argument("--adam-eps", type=float, default=1e-8)
    g.add_argument("--grad-clip", type=float, default=1.0, help="global gradient norm clip (0 = off)")
    g.add_argument("--reset-prob", type=float, default=0.125, help="per stream and window")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--bf16", action="store_true",
                   help="bf16 autocast for the matrix products (weights, optimizer, WKV, norms and loss stay "
                        "f32); about 2.5x faster where the CPU has AVX512-BF16, e.g. this machine")
    g = p.add_argument_group("run control (may change on --resume)")
    g.add_argument("--chunk-len", type=int, default=32, help="WKV chunk length (speed only; result is exact)")
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--ckpt-every", type=int, default=100)
    g.add_argument("--eval-every", type=int, default=250, help="held-out evaluation (0 = only at the end)")
    g.add_argument("--max-minutes", type=float, default=0, help="checkpoint and stop after this long (0 = no limit)")
    return p.parse_args(argv)


# ---- self-test -----------------------------------------------------------------------------

def selftest():
    """Chunked WKV == sequential recurrence (values, final state, gradients), in f64 and f32,
    on both intra-chunk paths; model state carry; export round trip. Returns 0 if all pass."""
    torch.manual_seed(1234)
    failures = []

    def check(name, got, limit):
        ok = got < limit
        print("  %-66s %.3e  (< %.0e) %s" % (name, got, limit, "ok" if ok else "FAIL"))
        if not ok:
            failures.append(name)

    print("WKV op: chunked vs sequential recurrence, B=2 T=200 H=3 S=64, time_decay in [-6, hi]")
    B, T, H, S = 2, 200, 3, 64
    # Unit-variance r and v; k scaled 0.1 as the initial att.key (gain 0.1) makes it, and 0.3
    # (f64 only) for a larger y. max|y| is printed: f32 differences are relative to it.
    for dtype, limit, k_scale in ((torch.float64, 1e-10, 0.3), (torch.float32, 1e-4, 0.1)):
        for hi in (-1.0, 2.0):              # initial range / a trained model's fast decays
            td = torch.empty(H, S, dtype=torch.float64).uniform_(-6, hi)
            r, v = torch.randn(B, T, H, S, dtype=torch.float64), torch.randn(B, T, H, S, dtype=torch.float64)
            k = k_scale * torch.randn(B, T, H, S, dtype=torch.float64)
            u = 0.5 * torch.randn(H, S, dtype=torch.float64)
            s0 = 0.1 * torch.randn(B, H, S, S, dtype=torch.float64)
            y_ref, s_ref = wkv_sequential(r, k, v, torch.exp(-torch.exp(td)), u, s0)   # f64 truth
            cast = [x.to(dtype) for x in (r, k, v, td, u, s0)]
            y_seq, s_seq = wkv_sequential(cast[0], cast[1], cast[2], torch.exp(-torch.exp(cast[3])), cast[4], cast[5])
            for chunk_len, max_exp, label in ((32, rwkv5.FACTORISED_MAX_EXPONENT, "auto"),
                                              (64, rwkv5.FACTORISED_MAX_EXPONENT, "auto"),
                                              (32, -1.0, "log-space mask")):
                y, s = wkv_chunked(cast[0], cast[1], cast[2], -torch.exp(cast[3]), cast[4], cast[5],
                                   chunk_len, max_exp)
                tag = "%s hi=%+.0f L=%d %s" % (str(dtype)[6:], hi, chunk_len, label)
                check(tag + ": max|y_chunk - y_seq|", float((y - y_seq).abs().max()), limit)
                check(tag + ": max|state_chunk - state_seq|", float((s - s_seq).abs().max()), limit)
            print("    max|y| %.2f; %s sequential vs f64 truth: max|dy| %.2e" % (
                float(y_ref.abs().max()), str(dtype)[6:], float((y_seq.double() - y_ref).abs().max())))

    print("WKV gradients (f64): d/d(r,k,v,time_decay,u) of <y, g>, chunked vs sequential")
    B, T = 1, 70
    leaves = [torch.randn(B, T, H, S, dtype=torch.float64), 0.3 * torch.randn(B, T, H, S, dtype=torch.float64),
              torch.randn(B, T, H, S, dtype=torch.float64), torch.empty(H, S, dtype=torch.float64).uniform_(-6, 1.5),
              0.5 * torch.randn(H, S, dtype=torch.float64)]
    g_out = torch.randn(B, T, H, S, dtype=torch.float64)
    grads = []
    for chunked in (False, True):
        xs = [x.clone().requires_grad_(True) for x in leaves]
        s0 = torch.zeros(B, H, S, S, dtype=torch.float64)
        if chunked:
            y, _ = wkv_chunked(xs[0], xs[1], xs[2], -torch.exp(xs[3]), xs[4], s0, 16)
        else:
            y, _ = wkv_sequential(xs[0], xs[1], xs[2], torch.exp(-torch.exp(xs[3])), xs[4], s0)
        (y * g_out).sum().backward()
        grads.append([x.grad for x in xs])
    for name, a, b in zip(("r", "k", "v", "time_decay", "u"), grads[0], grads[1]):
        check("grad %s: max|chunked - sequential|" % name, float((a - b).abs().max()), 1e-8)

    print("Model (C=128, L=2, V=300, random weights, f32): chunked vs sequential, state carry")
    cfg = Config(n_vocab=300, n_embd=128, n_layer=2, head_size=64)
    model = RWKV5(cfg)
    model.init_weights(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "emb" not in name:
                p.normal_(0, 0.5 / math.sqrt(p.shape[1]))
            elif "emb" in name:
                p.normal_(0, 1.0)
    idx = torch.randint(0, cfg.n_vocab, (2, 100))
    with torch.no_grad():
        seq_logits, seq_state = model(idx, sequential=True)
        chunk_logits, chunk_state = model(idx, chunk_len=32)
        a_logits, a_state = model(idx[:, :37], chunk_len=32)
        b_logits, b_state = model(idx[:, 37:], a_state, chunk_len=32)
    check("logits: max|chunked - sequential|", float((seq_logits - chunk_logits).abs().max()), 1e-4)
    check("wkv state: max|chunked - sequential|",
          max(float((a[1] - b[1]).abs().max()) for a, b in zip(seq_state, chunk_state)), 1e-4)
    check("logits: max|two calls carrying state - one call|",
          float((torch.cat([a_logits, b_logits], 1) - chunk_logits).abs().max()), 1e-4)

    print("Export: BlinkDL names, shapes, F32, round trip")
    import tempfile
    from safetensors_io import read_safetensors
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.safetensors")
        export_model(model, path)
        tensors, meta = read_safetensors(path)
    C, Fw = cfg.n_embd, cfg.n_ffn
    want = {"emb.weight": (300, C), "blocks.0.ln0.weight": (C,), "blocks.1.att.time_mix_g": (1, 1, C),
            "blocks.1.att.time_decay": (2, 64), "blocks.1.att.time_faaaa": (2, 64), "blocks.0.att.gate.weight": (C, C),
            "blocks.0.att.ln_x.bias": (C,), "blocks.1.ffn.key.weight": (Fw, C), "blocks.1.ffn.value.weight": (C, Fw),
            "blocks.1.ffn.receptance.weight": (C, C), "ln_out.weight": (C,), "head.weight": (300, C)}
    bad = [n for n, s in want.items() if n not in tensors or tuple(tensors[n].shape) != s]
    bad += [n for n in tensors if tensors[n].dtype != np.float32]
    bad += ["blocks.1.ln0.weight"] if "blocks.1.ln0.weight" in tensors else []
    diff = max(float(np.abs(tensors[n] - p.detach().numpy()).max()) for n, p in model.state_dict().items())
    check("export: %d tensors, wrong names/shapes/dtypes: %d; max|read - model|" % (len(tensors), len(bad)),
          diff + len(bad), 1e-12)
    if meta.get("format") != "pt":
        failures.append("metadata format")

    print("selftest: %d failed" % len(failures) if failures else "selftest: all passed")
    return 1 if failures else 0


# ---- training --------------------------------------------------------------------------------

def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr_final + 0.5 * (args.lr - args.lr_final) * (1 + math.cos(math.pi * min(1.0, progress)))


class Batches:
    """Deterministic windows: batch_size streams over the token stream, see the module doc."""

    def __init__(self, tokens, args):
        self.tokens = tokens
        self.B, self.T, self.seed = args.batch_size, args.ctx_len, args.seed
        self.reset_prob = args.reset_prob
        self.stride = len(tokens) // self.B
        self.steps_per_epoch = self.stride // self.T
        if self.steps_per_epoch < 1:
            raise ValueError("corpus of %d tokens is too small for %d streams of %d" % (len(tokens), self.B, self.T))

    def get(self, step):
        """Returns x, y [B, T] int64 and a [B] bool mask of streams whose state must be reset."""
        epoch, i = divmod(step, self.steps_per_epoch)
        offset = int(np.random.default_rng([self.seed, 1, epoch]).integers(len(self.tokens)))
        starts = (offset + np.arange(self.B) * self.stride + i * self.T) % len(self.tokens)
        pos = (starts[:, None] + np.arange(self.T + 1)[None, :]) % len(self.tokens)
        window = torch.from_numpy(self.tokens[pos].astype(np.int64))
        reset = np.random.default_rng([self.seed, 2, step]).random(self.B) < self.reset_prob
        if i == 0:
            reset[:] = True  # new epoch: the streams jump to new places
        return window[:, :-1], window[:, 1:], torch.from_numpy(reset)


def make_optimizer(model, args):
    # Weight decay on the matrices only (emb, head, projections), as BlinkDL's trainer does;
    # time_decay/time_faaaa are [H, S] but are per-channel vectors.
    def is_matrix(name, p):
        return p.squeeze().dim() >= 2 and not name.endswith(("time_decay", "time_faaaa"))
    decay = [p for n, p in model.named_parameters() if is_matrix(n, p)]
    no_decay = [p for n, p in model.named_parameters() if not is_matrix(n, p)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=args.lr, betas=(args.beta1, args.beta2), eps=args.adam_eps)


def reset_state(state, reset):
    keep = (~reset).float()
    return [tuple(t * keep.view(-1, *([1] * (t.dim() - 1))) for t in layer) for layer in state]


def save_checkpoint(path, model, opt, step, state, args, tokens_seen):
    ckpt = {"config": model.cfg.to_dict(), "run_args": {k: getattr(args, k) for k in RUN_ARGS},
            "step": step, "tokens_seen": tokens_seen, "model": model.state_dict(),
            "optim": opt.state_dict(), "stream_state": state}
    tmp = path + ".tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def fmt_time(seconds):
    seconds = int(max(0, seconds))
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def load_data(args):
    vocab_path = args.vocab or os.path.join(args.data_dir, "vocab.txt")
    tok = GreedyTokenizer(load_vocab(vocab_path))
    n_vocab = max(tok.vocab) + 1
    train = token_cache("train-stream", os.path.join(args.data_dir, "train.txt"), vocab_path, tok, train_stream)
    heldout_path = os.path.join(args.data_dir, "heldout.txt")
    heldout = token_cache("heldout-file", heldout_path, vocab_path, tok, file_tokens) \
        if os.path.exists(heldout_path) else None
    return n_vocab, train, heldout


def evaluate(model, heldout, args):
    t0 = time.time()
    total, count = sequence_nll(model, heldout, window=args.ctx_len, chunk_len=args.chunk_len)
    model.train()
    return total / count, count, time.time() - t0


def train(args):
    torch.set_num_threads(args.threads)
    run_dir = args.run_dir or os.path.join(args.data_dir, "run")
    ckpt_path = os.path.join(run_dir, "checkpoint.pt")
    ckpt = None
    if args.resume:
        if not os.path.exists(ckpt_path):
            print("train: --resume: %s does not exist" % ckpt_path, file=sys.stderr)
            return 1
        ckpt = torch.load(ckpt_path, map_location="cpu")
        # A setting added after the checkpoint was written keeps its default (bf16 = off).
        saved = dict(vars(parse_args([])), **ckpt["run_args"])
        changed = [k for k in RUN_ARGS if getattr(args, k) != saved[k]]
        for k in RUN_ARGS:
            setattr(args, k, saved[k])
        if changed:
            print("resume: using the checkpoint's %s" % ", ".join("%s=%s" % (k, getattr(args, k)) for k in changed))
    elif os.path.exists(ckpt_path) and not args.bench:
        print("train: %s exists; pass --resume to continue it, or remove it" % ckpt_path, file=sys.stderr)
        return 1

    n_vocab, tokens, heldout = load_data(args)
    torch.manual_seed(args.seed)
    cfg = Config(n_vocab=n_vocab, n_embd=args.n_embd, n_layer=args.n_layer, head_size=args.head_size, n_ffn=args.n_ffn)
    model = RWKV5(cfg)
    model.init_weights(args.seed)
    opt = make_optimizer(model, args)
    batches = Batches(tokens, args)
    step, tokens_seen = 0, 0
    state = model.zero_state(args.batch_size)
    if ckpt is not None:
        if Config(**ckpt["config"]) != cfg:
            print("train: checkpoint model %s differs from %s" % (ckpt["config"], cfg.to_dict()), file=sys.stderr)
            return 1
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optim"])
        step, tokens_seen, state = ckpt["step"], ckpt["tokens_seen"], ckpt["stream_state"]
        del ckpt

    n_params = sum(p.numel() for p in model.parameters())
    print("model: RWKV-5.2 L%d C%d H%d F%d V%d, %.2fM parameters (%.2fM without emb/head)" % (
        cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_ffn, cfg.n_vocab, n_params / 1e6,
        (n_params - 2 * cfg.n_vocab * cfg.n_embd) / 1e6))
    print("data: %d train tokens (%.2f epochs in %d steps of %dx%d), %s held-out tokens" % (
        len(tokens), args.steps * args.batch_size * args.ctx_len / len(tokens), args.steps, args.batch_size,
        args.ctx_len, len(heldout) if heldout is not None else "no"))

    if args.bench:
        return bench(model, opt, batches, state, args)

    os.makedirs(run_dir, exist_ok=True)
    log = open(os.path.join(run_dir, "train-log.jsonl"), "a", encoding="utf-8")
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
    while step < args.steps:
        x, y, reset = batches.get(step)
        state = reset_state(state, reset)
        lr = lr_at(step, args)
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits, new_state = model(x, state, chunk_len=args.chunk_len)
        loss = F.cross_entropy(logits.float().view(-1, cfg.n_vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip))
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
            max_decay = max(float(b.att.time_decay.max()) for b in model.blocks)
            print("step %5d/%d | loss %.4f | lr %.2e | |g| %.2f | %6.0f tok/s | elapsed %s | ETA %s" % (
                step, args.steps, loss_sum / loss_n, lr, grad_norm, rate, fmt_time(now - t_start), fmt_time(eta)),
                flush=True)
            log.write(json.dumps({"step": step, "loss": loss_sum / loss_n, "lr": lr, "grad_norm": grad_norm,
                                  "tok_per_s": rate, "tokens": tokens_seen, "max_time_decay": max_decay,
                                  "time": now}) + "\n")
            log.flush()
            t_log, loss_sum, loss_n = now, 0.0, 0
        if heldout is not None and args.eval_every and step % args.eval_every == 0 and step < args.steps:
            nll, count, secs = evaluate(model, heldout, args)
            print("eval  step %5d | held-out NLL %.4f ppl %.2f (%d tokens, %.0f s)" % (
                step, nll, math.exp(nll), count, secs), flush=True)
            log.write(json.dumps({"step": step, "heldout_nll": nll, "heldout_ppl": math.exp(nll)}) + "\n")
            log.flush()
            t_log = time.time()  # keep evaluation out of tokens/s
        out_of_time = args.max_minutes and time.time() - t_start > args.max_minutes * 60
        if step % args.ckpt_every == 0 or step == args.steps or stop["signal"] or out_of_time:
            save_checkpoint(ckpt_path, model, opt, step, state, args, tokens_seen)
        if (stop["signal"] or out_of_time) and step < args.steps:
            print("stopped at step %d (%s); checkpoint %s; continue with --resume" % (
                step, "signal %d" % stop["signal"] if stop["signal"] else "--max-minutes", ckpt_path))
            return 3

    if heldout is not None:
        nll, count, secs = evaluate(model, heldout, args)
        print("final held-out NLL %.4f ppl %.2f (%d tokens)" % (nll, math.exp(nll), count))
        log.write(json.dumps({"step": step, "heldout_nll": nll, "heldout_ppl": math.exp(nll)}) + "\n")
    out = args.export or os.path.join(run_dir, "model.safetensors")
    export_model(model, out, {"train.step": str(step), "train.tokens": str(tokens_seen)})
    print("exported %s" % out)
    return 0


def bench(model, opt, batches, state, args):
    """Times training steps (after one warm-up step); writes nothing."""
    model.train()
    times = []
    for step in range(args.bench + 1):
        x, y, reset = batches.get(step)
        state = reset_state(state, reset)
        t0 = time.time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits, new_state = model(x, state, chunk_len=args.chunk_len)
        loss = F.cross_entropy(logits.float().view(-1, model.cfg.n_vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state = detach_state(new_state)
        times.append(time.time() - t0)
    per_step = sorted(times[1:])[len(times[1:]) // 2]
    rate = args.batch_size * args.ctx_len / per_step
    print("bench: L%d C%d ctx %d batch %d chunk %d%s: median %.2f s/step, %.0f tok/s (min %.2f s, max %.2f s); "
          "2 h = %d steps" % (args.n_layer, args.n_embd, args.ctx_len, args.batch_size, args.chunk_len,
                              " bf16" if args.bf16 else " f32", per_step,
                              rate, min(times[1:]), max(times[1:]), int(7200 / per_step)))
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.selftest:
        torch.set_num_threads(args.threads)
        return selftest()
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
