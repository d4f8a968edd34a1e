"""RWKV-5.2 ("Eagle", gated, per-channel decay) in PyTorch for training on CPU (issue #4).

    model = RWKV5(Config(n_vocab=12288, n_embd=384, n_layer=6))
    logits, state = model(idx)                 # idx [B, T] int64; fresh (zero) state
    logits, state = model(idx2, state)         # continue the same sequences

Parameter names are the BlinkDL checkpoint names (rwkv-math.md §1, §5, formats.md §2.5), so
`model.state_dict()` is what a BlinkDL .pth holds: time_decay is the raw w (runtime decay
exp(-exp(w))), time_faaaa the raw bonus u, time_mix_* are [1, 1, C].

Per head h with state S[j = key][i = value] (rwkv-math.md §5):
    y_t[i]   = sum_j r_t[j] * (u[j] * k_t[j] * v_t[i] + S[j][i])      # output before the update
    S[j][i] <- w[j] * S[j][i] + k_t[j] * v_t[i]
The training forward computes this in a chunked parallel form (wkv_chunked): inside a chunk of L
tokens the pairwise decays w^(t-1-s) are one matrix product of factors anchored at the chunk
middle while they cannot overflow, else (fast decays, short chunks) a log-space mask whose
exponents are never positive; across chunks the state is passed sequentially. wkv_sequential is
the plain recurrence it is checked against (train.py --selftest).
"""

import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

LN_EPS = 1e-5
# rwkv-math.md §9: BlinkDL v5.2 checkpoints use GroupNorm eps 64e-5 (GN on y/8 with eps 1e-5).
GN_EPS = 64e-5


@dataclass
class Config:
    n_vocab: int
    n_embd: int
    n_layer: int
    head_size: int = 64
    # FFN width; 0 = 3.5 * n_embd rounded down to a multiple of 32 (rwkv-math.md §1).
    n_ffn: int = 0

    def __post_init__(self):
        if self.n_embd % self.head_size != 0:
            raise ValueError("n_embd %d is not a multiple of head_size %d" % (self.n_embd, self.head_size))
        if self.n_ffn == 0:
            self.n_ffn = int(self.n_embd * 3.5) // 32 * 32

    @property
    def n_head(self):
        return self.n_embd // self.head_size

    def to_dict(self):
        return asdict(self)


# ---- WKV ---------------------------------------------------------------------------------

def wkv_sequential(r, k, v, w, u, s0):
    """Reference recurrence, one token at a time.

    r, k, v: [B, T, H, S]; w: [H, S] decay factor in (0, 1) (= exp(-exp(time_decay)));
    u: [H, S] bonus; s0: [B, H, S, S] state [key][value]. Returns y [B, T, H, S], state.
    """
    s = s0
    ys = []
    for t in range(r.shape[1]):
        rt, kt, vt = r[:, t], k[:, t], v[:, t]                     # [B, H, S]
        kv = kt.unsqueeze(-1) * vt.unsqueeze(-2)                    # [B, H, S(j), S(i)]
        ys.append(torch.einsum("bhj,bhji->bhi", rt, u.unsqueeze(-1) * kv + s))
        s = w.unsqueeze(-1) * s + kv
    return torch.stack(ys, dim=1), s


# A factorised intra-chunk product multiplies factors exp(+-(L/2) * |log w|); it is used only
# while they stay within exp(+-FACTORISED_MAX_EXPONENT) (far from f32 overflow at exp(88)).
FACTORISED_MAX_EXPONENT = 30.0


def _intra_masked(r, k, logw):
    """A[t, s] = sum_j r_t[j] k_s[j] w_j^(t-1-s) for s < t, else 0, from a log-space mask.

    r, k: [B, H, N, L, S]; logw: [H, S]. Exact for any decay (no exponent is positive), but
    materialises an [.., L, L, S] product.
    """
    L = r.shape[3]
    t = torch.arange(L, device=r.device)
    dist = (t.view(L, 1) - 1 - t.view(1, L)).to(r.dtype)               # t-1-s
    lower = (t.view(L, 1) > t.view(1, L)).to(r.dtype)
    # clamp(min=0) keeps the masked-out entries finite before they are zeroed.
    H, S = logw.shape
    D = torch.exp(dist.clamp(min=0).view(1, L, L, 1) * logw.view(H, 1, 1, S)) * lower.view(1, L, L, 1)
    return (r.unsqueeze(-2) * k.unsqueeze(-3) * D.view(H, 1, L, L, S)).sum(-1)   # [B, H, N, L, L]


def _intra_factorised(r, k, logw):
    """Same as _intra_masked via one matmul: w^(t-1-s) = w^(t-c) * w^(c-1-s), anchored at the
    chunk middle c. REQUIRES: (L - L//2) * max|log w| <= FACTORISED_MAX_EXPONENT."""
    L, S = r.shape[3], r.shape[4]
    c = L // 2
    pos = torch.arange(L, device=r.device, dtype=r.dtype).view(1, 1, L, 1)
    lw = logw.view(-1, 1, 1, S)                                           # [H, 1, 1, S]
    rf = r * torch.exp((pos - c) * lw)
    kf = k * torch.exp((c - 1 - pos) * lw)
    return torch.tril(rf @ kf.transpose(-1, -2), diagonal=-1)


def _wkv_chunks(r, k, v, logw, u, s0, max_exponent):
    """All chunks of one length L at once. r, k, v: [B, H, N, L, S] (per head, chunk, position);
    logw, u: [H, S]; s0: [B, H, S, S]. Returns y [B, H, N, L, S] and the final state."""
    B, H, N, L, S = r.shape
    # Intra-chunk: y_t = sum_{s<t} A[t,s] v_s + (sum_j r_t[j] u_j k_t[j]) v_t
    if (L - L // 2) * float(-logw.min()) <= max_exponent:
        A = _intra_factorised(r, k, logw)
    else:
        A = _intra_masked(r, k, logw)
    y = A @ v + (r * u.view(1, H, 1, 1, S) * k).sum(-1, keepdim=True) * v
    # Inter-chunk: y_t += (r_t * w^t) @ S_n, S_n = state at the chunk start;
    # S_{n+1} = w^L * S_n + sum_s (k_s * w^(L-1-s))^T v_s.
    pos = torch.arange(L, device=r.device, dtype=r.dtype).view(1, 1, L, 1)
    lw = logw.view(H, 1, 1, S)
    r_dec = r * torch.exp(pos * lw)
    kv = (k * torch.exp((L - 1 - pos) * lw)).transpose(-1, -2) @ v         # [B, H, N, S, S]
    w_chunk = torch.exp(L * logw).view(1, H, S, 1)
    starts = []
    s = s0
    for n in range(N):
        starts.append(s)
        s = w_chunk * s + kv[:, :, n]
    return y + r_dec @ torch.stack(starts, dim=2), s


def wkv_chunked(r, k, v, logw, u, s0, chunk_len=32, max_exponent=FACTORISED_MAX_EXPONENT):
    """Same result as wkv_sequential with w = exp(logw); logw = -exp(time_decay) <= 0.

    r, k, v: [B, T, H, S]. T need not be a multiple of chunk_len: the tail is one shorter chunk.
    max_exponent < 0 forces the log-space mask (the self-test checks both paths).
    """
    B, T, H, S = r.shape
    # Fast decays (large |log w|) make the factorised product unsafe for long chunks: shorten
    # the chunk first (cheap), fall back to the log-space mask only below 8 tokens.
    max_lw = float(-logw.min())
    L = max(1, min(chunk_len, T))
    while max_exponent >= 0 and L > 8 and (L - L // 2) * max_lw > max_exponent:
        L //= 2
    r, k, v = (x.permute(0, 2, 1, 3) for x in (r, k, v))                  # [B, H, T, S]
    ys = []
    s = s0
    for begin, end, n in ((0, T // L * L, T // L), (T // L * L, T, 1)):
        if end <= begin:
            continue
        length = (end - begin) // n
        shape = (B, H, n, length, S)
        part = (r, k, v) if end - begin == T else (r[:, :, begin:end], k[:, :, begin:end], v[:, :, begin:end])
        y, s = _wkv_chunks(part[0].reshape(shape), part[1].reshape(shape), part[2].reshape(shape),
                           logw, u, s, max_exponent)
        ys.append(y.reshape(B, H, end - begin, S))
    y = torch.cat(ys, dim=2) if len(ys) > 1 else ys[0]
    return y.permute(0, 2, 1, 3), s


# ---- Model -------------------------------------------------------------------------------

def _token_shift(x, prev):
    """x: [B, T, C]; prev: [B, C] (previous token's value). Returns x shifted right by one."""
    return torch.cat([prev.unsqueeze(1), x[:, :-1]], dim=1)


class TimeMix(nn.Module):
    def __init__(self, cfg, layer_id):
        super().__init__()
        C, H, S = cfg.n_embd, cfg.n_head, cfg.head_size
        self.n_head, self.head_size = H, S
        self.time_mix_k = nn.Parameter(torch.empty(1, 1, C))
        self.time_mix_v = nn.Parameter(torch.empty(1, 1, C))
        self.time_mix_r = nn.Parameter(torch.empty(1, 1, C))
        self.time_mix_g = nn.Parameter(torch.empty(1, 1, C))
        self.time_decay = nn.Parameter(torch.empty(H, S))
        self.time_faaaa = nn.Parameter(torch.empty(H, S))
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.gate = nn.Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(H, C, eps=GN_EPS)

    def forward(self, x, prev_x, wkv_state, chunk_len, sequential=False):
        B, T, C = x.shape
        H, S = self.n_head, self.head_size
        xx = _token_shift(x, prev_x)
        # v5 lerp: xm = x * mu + prev * (1 - mu), computed as prev + (x - prev) * mu.
        dx = x - xx
        xk = torch.addcmul(xx, dx, self.time_mix_k)
        xv = torch.addcmul(xx, dx, self.time_mix_v)
        xr = torch.addcmul(xx, dx, self.time_mix_r)
        xg = torch.addcmul(xx, dx, self.time_mix_g)
        r = self.receptance(xr).view(B, T, H, S)
        k = self.key(xk).view(B, T, H, S)
        v = self.value(xv).view(B, T, H, S)
        g = F.silu(self.gate(xg))
        # The recurrence, its decays and the GroupNorm stay f32 under bf16 autocast (rwkv-math.md §11).
        with torch.autocast("cpu", enabled=False):
            r, k, v = r.float(), k.float(), v.float()
            logw = -torch.exp(self.time_decay)                      # log of exp(-exp(w))
            if sequential:
                y, wkv_state = wkv_sequential(r, k, v, torch.exp(logw), self.time_faaaa, wkv_state)
            else:
                y, wkv_state = wkv_chunked(r, k, v, logw, self.time_faaaa, wkv_state, chunk_len)
            y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        return self.output(y * g), x[:, -1], wkv_state


class ChannelMix(nn.Module):
    def __init__(self, cfg, layer_id):
        super().__init__()
        C, Fw = cfg.n_embd, cfg.n_ffn
        self.time_mix_k = nn.Parameter(torch.empty(1, 1, C))
        self.time_mix_r = nn.Parameter(torch.empty(1, 1, C))
        self.key = nn.Linear(C, Fw, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(Fw, C, bias=False)

    def forward(self, x, prev_x):
        xx = _token_shift(x, prev_x)
        dx = x - xx
        xk = torch.addcmul(xx, dx, self.time_mix_k)
        xr = torch.addcmul(xx, dx, self.time_mix_r)
        k = torch.square(torch.relu(self.key(xk)))
        return torch.sigmoid(self.receptance(xr)) * self.value(k), x[:, -1]


class Block(nn.Module):
    def __init__(self, cfg, layer_id):
        super().__init__()
        C = cfg.n_embd
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(C, eps=LN_EPS)
        self.ln1 = nn.LayerNorm(C, eps=LN_EPS)
        self.ln2 = nn.LayerNorm(C, eps=LN_EPS)
        self.att = TimeMix(cfg, layer_id)
        self.ffn = ChannelMix(cfg, layer_id)


class RWKV5(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.n_vocab, cfg.n_embd)
        self.blocks = nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)])
        self.ln_out = nn.LayerNorm(cfg.n_embd, eps=LN_EPS)
        self.head = nn.Linear(cfg.n_embd, cfg.n_vocab, bias=False)

    def zero_state(self, batch):
        """Fresh state: per layer (att_x [B,C], wkv [B,H,S,S], ffn_x [B,C]), all zeros."""
        c = self.cfg
        p = self.emb.weight
        return [(p.new_zeros(batch, c.n_embd), p.new_zeros(batch, c.n_head, c.head_size, c.head_size),
                 p.new_zeros(batch, c.n_embd)) for _ in range(c.n_layer)]

    def forward(self, idx, state=None, chunk_len=32, sequential=False, last_only=False):
        """idx [B, T] -> logits [B, T, V] (or [B, 1, V] with last_only), new state."""
        if state is None:
            state = self.zero_state(idx.shape[0])
        x = self.emb(idx)
        new_state = []
        for i, block in enumerate(self.blocks):
            att_x, wkv, ffn_x = state[i]
            if i == 0:
                x = block.ln0(x)
            a = block.ln1(x)
            dx, att_x, wkv = block.att(a, att_x, wkv, chunk_len, sequential)
            x = x + dx
            f = block.ln2(x)
            dx, ffn_x = block.ffn(f, ffn_x)
            x = x + dx
            new_state.append((att_x, wkv, ffn_x))
        if last_only:
            x = x[:, -1:]
        return self.head(self.ln_out(x)), new_state

    @torch.no_grad()
    def init_weights(self, seed):
        """BlinkDL's RWKV-5 initialisation (RWKV-LM v5 model.py), deterministic for a seed."""
        g = torch.Generator().manual_seed(seed)
        c = self.cfg
        C, L = c.n_embd, c.n_layer
        ddd = torch.arange(C, dtype=torch.float32).view(1, 1, C) / C
        n = torch.arange(C, dtype=torch.float32)
        for i, block in enumerate(self.blocks):
            r01 = i / (L - 1) if L > 1 else 0.0     # ratio_0_to_1
            r10 = 1.0 - i / L                        # ratio_1_to_almost0
            att, ffn = block.att, block.ffn
            att.time_mix_k.copy_(ddd ** r10)
            att.time_mix_v.copy_(ddd ** r10 + 0.3 * r01)
            att.time_mix_r.copy_(ddd ** (0.5 * r10))
            att.time_mix_g.copy_(ddd ** (0.5 * r10))
            decay = -6 + 5 * (n / (C - 1)) ** (0.7 + 1.3 * r01)
            att.time_decay.copy_(decay.view(c.n_head, c.head_size))
            zigzag = ((n + 1) % 3 - 1) * 0.1
            att.time_faaaa.copy_((r01 * (1 - n / (C - 1)) + zigzag).view(c.n_head, c.head_size))
            ffn.time_mix_k.copy_(ddd ** r10)
            ffn.time_mix_r.copy_(ddd ** r10)
            for lin, gain in ((att.receptance, 1.0), (att.key, 0.1), (att.value, 1.0), (att.gate, 0.1),
                              (att.output, 0.0), (ffn.key, 1.0), (ffn.receptance, 0.0), (ffn.value, 0.0)):
                _orthogonal_(lin.weight, gain, g)
            for ln in (block.ln1, block.ln2, att.ln_x) + ((block.ln0,) if i == 0 else ()):
                ln.weight.fill_(1.0)
                ln.bias.zero_()
        self.ln_out.weight.fill_(1.0)
        self.ln_out.bias.zero_()
        self.emb.weight.uniform_(-1e-4, 1e-4, generator=g)
        V = c.n_vocab
        _orthogonal_(self.head.weight, 0.5 * math.sqrt(V / C) if V > C else 0.5, g)


def _orthogonal_(weight, gain, generator):
    """Deterministic orthogonal init (QR of a Gaussian), or zeros for gain 0."""
    if gain == 0:
        weight.zero_()
        return
    rows, cols = weight.shape
    a = torch.randn(max(rows, cols), min(rows, cols), generator=generator)
    q, rr = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(rr)).unsqueeze(0)
    if rows < cols:
        q = q.t()
    weight.copy_(gain * q[:rows, :cols])


def detach_state(state):
    return [tuple(t.detach().float() for t in layer) for layer in state]


@torch.no_grad()
def sequence_nll(model, tokens, window=512, chunk_len=32, progress=None):
    """Held-out protocol: tokens is one sequence fed from a fresh state in windows of `window`
    tokens, carrying the state across windows. Returns (sum of -log p(tokens[t+1] | tokens[..t])
    over t = 0..n-2 in float64, number of predicted tokens)."""
    model.eval()
    ids = torch.as_tensor(tokens.astype("int64") if hasattr(tokens, "astype") else tokens).view(1, -1)
    n = ids.shape[1]
    state = None
    total = 0.0
    for begin in range(0, n - 1, window):
        end = min(begin + window, n - 1)
        logits, state = model(ids[:, begin:end], state, chunk_len=chunk_len)
        logp = torch.log_softmax(logits[0].double(), dim=-1)
        total -= float(logp.gather(1, ids[0, begin + 1:end + 1].view(-1, 1)).sum())
        if progress is not None:
            progress(end, n - 1)
    return total, n - 1
