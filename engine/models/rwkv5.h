// The v5/v6 per-head WKV recurrence, shared by rwkv5.cpp and rwkv6.cpp.
#pragma once

#include <cstdint>

#include "engine/models/blocks.h"

namespace rwkv::detail {

// The WKV recurrence of all T rows followed by the per-head group norm (ln_x), for v5 and v6:
// per head h of row t, y[i] = sum_j r[j] (u[j] k[j] v[i] + S[j][i]), then
// S[j][i] = k[j] v[i] + w[j] S[j][i]; state: H x [key j][value i] per row's State.
// w is per channel (w_stride 0, v5) or per row (w_stride C, v6). Heads are independent, so
// they are shared out over the kernels' thread team; each head walks the rows in order (rows of
// one sequence in a prefill chunk share its state). The bits do not depend on the thread count.
// When `gate` is given (v5.2, v6), each normalised y is then multiplied by silu(gate), in the
// same parallel pass.
void wkv5_rows(const Hparams& hp, const LayerWeights& lw, const Rows& rows, int64_t layer, const float* r,
               const float* k, const float* v, const float* w, int64_t w_stride, const float* gate, float* y);

}  // namespace rwkv::detail
