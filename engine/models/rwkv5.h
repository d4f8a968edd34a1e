// The v5/v6 per-head WKV recurrence, shared by rwkv5.cpp and rwkv6.cpp.
#pragma once

#include <cstdint>

#include "engine/models/blocks.h"

namespace rwkv::detail {

// One token through H heads of size S. state: H x [key j][value i]. w, u per channel (C = H*S).
// y[i] = sum_j r[j] (u[j] k[j] v[i] + S[j][i]), then S[j][i] = k[j] v[i] + w[j] S[j][i].
void wkv5_row(int64_t H, int64_t S, float* state, const float* r, const float* k, const float* v, const float* w,
              const float* u, float* y);

}  // namespace rwkv::detail
