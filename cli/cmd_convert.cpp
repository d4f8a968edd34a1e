// convert and synth: commands that write model files.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/formats/convert.h"

namespace rwkv::cli {
namespace {

bool parse_dtype(const std::string& s, DType* out, bool* keep) {
  *keep = false;
  if (s == "keep") { *keep = true; *out = DType::kF32; return true; }
  if (s == "f32") { *out = DType::kF32; return true; }
  if (s == "f16") { *out = DType::kF16; return true; }
  if (s == "q8_0") { *out = DType::kQ8_0; return true; }
  return false;
}

}  // namespace

int cmd_convert(int argc, char** argv) {
  ArgParser p("rwkv-edge convert",
              "Convert a model (rwkv.cpp .bin, safetensors with BlinkDL names, or GGUF) into the project's\n"
              "self-contained GGUF file, or (--to rwkvcpp) into rwkv.cpp's .bin format so the same weights\n"
              "can be run in rwkv.cpp side by side. PyTorch .pth checkpoints: run\n"
              "scripts/pth_to_safetensors.py first.");
  std::string in, out, dtype = "keep", tokenizer, to = "gguf", name;
  p.add_positional("IN", "input model file", &in);
  p.add_positional("OUT", "output file", &out);
  p.add_string("--dtype", "T", "matrix type: keep, f32, f16 or q8_0", &dtype);
  p.add_string("--tokenizer", "FILE|bytes", "embed this tokenizer (World vocab .txt, tokenizer.json, or 'bytes')", &tokenizer);
  p.add_string("--to", "FORMAT", "output format: gguf or rwkvcpp", &to);
  p.add_string("--name", "NAME", "model name stored in the GGUF metadata", &name);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;
  DType target;
  bool keep;
  if (!parse_dtype(dtype, &target, &keep)) {
    std::fprintf(stderr, "error: --dtype must be keep, f32, f16 or q8_0, got '%s'\n", dtype.c_str());
    return 2;
  }
  if (to != "gguf" && to != "rwkvcpp") {
    std::fprintf(stderr, "error: --to must be gguf or rwkvcpp, got '%s'\n", to.c_str());
    return 2;
  }
  if (in == out) return fail("convert", Status::InvalidArgument("input and output are the same file"));
  Result<ModelFile> mf = open_model_file(in);
  if (!mf.ok()) return fail("convert", mf.status());
  if (!tokenizer.empty()) {
    TokenizerSpec spec;
    if (tokenizer == "bytes") {
      spec.kind = "bytes";
    } else {
      Result<TokenizerSpec> r = read_tokenizer_file(tokenizer);
      if (!r.ok()) return fail("convert", r.status());
      spec = r.value();
    }
    Result<std::unique_ptr<Tokenizer>> tok = make_tokenizer(spec);
    if (!tok.ok()) return fail("convert", tok.status());
    if ((*tok)->vocab_size() > mf->hparams.n_vocab) {
      return fail("convert", Status::InvalidArgument(tokenizer + ": the tokenizer has " + std::to_string((*tok)->vocab_size()) +
                                                     " ids but the model only " + std::to_string(mf->hparams.n_vocab)));
    }
    mf->tokenizer = spec;
  }
  if (!name.empty()) mf->metadata["general.name"] = name;
  GgufWriteOptions opt;
  opt.matrix_type = target;
  opt.keep_types = keep;
  Status st;
  if (to == "gguf") {
    st = write_gguf(mf.value(), out, opt);
  } else {
    if (keep) {
      st = write_rwkvcpp(mf.value(), out);
    } else {
      Result<ModelFile> conv = convert_types(mf.value(), opt);
      if (!conv.ok()) return fail("convert", conv.status());
      st = write_rwkvcpp(conv.value(), out);
    }
    if (st.ok() && !mf->tokenizer.kind.empty() && mf->tokenizer.kind != "bytes") {
      std::fprintf(stderr, "note: rwkv.cpp files carry no tokenizer; give rwkv.cpp the vocabulary separately\n");
    }
  }
  if (!st.ok()) return fail("convert", st);
  std::fprintf(stderr, "wrote %s (RWKV v%s, %zu tensors)\n", out.c_str(), version_name(mf->hparams.version), mf->tensors.size());
  return 0;
}

namespace {

struct SynthShape {
  const char* name;
  RwkvVersion version;
  int64_t vocab, embd, layers, ffn;
};

// Published shapes (World vocabulary, head size 64).
const SynthShape kShapes[] = {
    {"5.2-0.1b", RwkvVersion::kV5_2, 65536, 768, 12, 2688},
    {"5.2-0.4b", RwkvVersion::kV5_2, 65536, 1024, 24, 3584},
    {"6-0.1b", RwkvVersion::kV6, 65536, 768, 12, 2688},
    {"7-0.1b", RwkvVersion::kV7, 65536, 768, 12, 3072},
    {"7-0.4b", RwkvVersion::kV7, 65536, 1024, 24, 4096},
};

// v7 low-rank width (llama.cpp's rule, rwkv-math.md §7).
int64_t lora_dim(double scale, double power, int64_t C) {
  const double v = scale * std::pow((double)C, power) / 32.0;
  return 32 * std::max<int64_t>(1, (int64_t)std::llround(v));
}

class Synth {
 public:
  Synth(ModelFile& mf, uint64_t seed) : mf_(mf), rng_(seed), store_(std::make_shared<BufferStorage>()) {
    mf_.storage.push_back(store_);
  }
  // ggml dims fastest first; values uniform in [lo, hi].
  void add(const std::string& name, std::vector<int64_t> ne, float lo, float hi) {
    TensorRef t;
    t.name = name;
    t.type = DType::kF32;
    t.n_dims = (int)ne.size();
    int64_t n = 1;
    for (size_t i = 0; i < ne.size(); ++i) {
      t.ne[i] = ne[i];
      n *= ne[i];
    }
    float* p = reinterpret_cast<float*>(store_->add((size_t)n * 4));
    std::uniform_real_distribution<float> u(lo, hi);
    if (lo == hi) {
      for (int64_t i = 0; i < n; ++i) p[i] = lo;
    } else {
      for (int64_t i = 0; i < n; ++i) p[i] = u(rng_);
    }
    t.data = reinterpret_cast<uint8_t*>(p);
    t.nbytes = (size_t)n * 4;
    mf_.add_tensor(std::move(t));
  }
  void vec(const std::string& name, int64_t n, float lo, float hi) { add(name, {n}, lo, hi); }
  // W[out, in] with uniform +-1/sqrt(in).
  void mat(const std::string& name, int64_t in, int64_t out) {
    const float a = 1.0f / std::sqrt((float)in);
    add(name, {in, out}, -a, a);
  }

 private:
  ModelFile& mf_;
  std::mt19937_64 rng_;
  std::shared_ptr<BufferStorage> store_;
};

}  // namespace

int cmd_synth(int argc, char** argv) {
  std::string shapes_list;
  for (const SynthShape& s : kShapes) shapes_list += std::string(shapes_list.empty() ? "" : ", ") + s.name;
  ArgParser p("rwkv-edge synth",
              "Write a model of a real published shape with random weights, for benchmarks only (its text is\n"
              "noise). Shapes: " + shapes_list + ".");
  std::string shape, out, dtype = "f16";
  int64_t seed = 1;
  p.add_string("--shape", "NAME", "model shape", &shape, true);
  p.add_string("--out", "M.gguf", "output GGUF file", &out, true);
  p.add_string("--dtype", "T", "matrix type: f32, f16 or q8_0", &dtype);
  p.add_int("--seed", "S", "random seed", &seed, 0, INT64_MAX);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;
  const SynthShape* sh = nullptr;
  for (const SynthShape& s : kShapes) {
    if (shape == s.name) sh = &s;
  }
  if (sh == nullptr) {
    std::fprintf(stderr, "error: unknown --shape '%s' (known: %s)\n", shape.c_str(), shapes_list.c_str());
    return 2;
  }
  DType target;
  bool keep;
  if (!parse_dtype(dtype, &target, &keep) || keep) {
    std::fprintf(stderr, "error: --dtype must be f32, f16 or q8_0, got '%s'\n", dtype.c_str());
    return 2;
  }
  ModelFile mf;
  mf.path = out;
  mf.source_format = "synth";
  Synth s(mf, (uint64_t)seed);
  const int64_t C = sh->embd, V = sh->vocab, F = sh->ffn, S = 64, H = C / S;
  s.mat("emb.weight", C, V);
  s.vec("blocks.0.ln0.weight", C, 1, 1);
  s.vec("blocks.0.ln0.bias", C, 0, 0);
  s.vec("ln_out.weight", C, 1, 1);
  s.vec("ln_out.bias", C, 0, 0);
  s.mat("head.weight", C, V);
  for (int64_t l = 0; l < sh->layers; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    s.vec(b + "ln1.weight", C, 1, 1);
    s.vec(b + "ln1.bias", C, 0, 0);
    s.vec(b + "ln2.weight", C, 1, 1);
    s.vec(b + "ln2.bias", C, 0, 0);
    for (const char* m : {"att.receptance.weight", "att.key.weight", "att.value.weight", "att.output.weight"}) {
      s.mat(b + m, C, C);
    }
    s.vec(b + "att.ln_x.weight", C, 1, 1);
    s.vec(b + "att.ln_x.bias", C, 0, 0);
    s.mat(b + "ffn.key.weight", C, F);
    s.mat(b + "ffn.value.weight", F, C);
    if (sh->version == RwkvVersion::kV5_2) {
      for (const char* m : {"att.time_mix_k", "att.time_mix_v", "att.time_mix_r", "att.time_mix_g", "ffn.time_mix_k",
                            "ffn.time_mix_r"}) {
        s.vec(b + m, C, 0.2f, 0.8f);
      }
      s.add(b + "att.time_decay", {1, S, H}, 0.90f, 0.999f);  // exp(-exp(w)), a decay factor
      s.add(b + "att.time_faaaa", {1, S, H}, 0.0f, 1.0f);
      s.mat(b + "att.gate.weight", C, C);
      s.mat(b + "ffn.receptance.weight", C, C);
    } else if (sh->version == RwkvVersion::kV6) {
      const int64_t D = 32, Dd = 64;
      for (const char* m : {"att.time_maa_x", "att.time_maa_w", "att.time_maa_k", "att.time_maa_v", "att.time_maa_r",
                            "att.time_maa_g", "ffn.time_maa_k", "ffn.time_maa_r"}) {
        s.vec(b + m, C, 0.2f, 0.8f);
      }
      s.mat(b + "att.time_maa_w1", C, 5 * D);
      s.add(b + "att.time_maa_w2", {D, C, 5}, -0.1f, 0.1f);
      s.add(b + "att.time_decay", {1, S, H}, -6.0f, -1.0f);
      s.mat(b + "att.time_decay_w1", C, Dd);
      s.mat(b + "att.time_decay_w2", Dd, C);
      s.add(b + "att.time_faaaa", {1, S, H}, 0.0f, 1.0f);
      s.mat(b + "att.gate.weight", C, C);
      s.mat(b + "ffn.receptance.weight", C, C);
    } else {
      const int64_t Dw = lora_dim(1.8, 0.5, C), Dv = lora_dim(1.3, 0.5, C), Dg = lora_dim(0.6, 0.8, C);
      s.add(b + "att.x_rwkvag", {C, 1, 6}, 0.2f, 0.8f);
      s.add(b + "att.w0", {C, 1, 1}, -1.0f, 1.0f);
      s.mat(b + "att.w1", C, Dw);
      s.mat(b + "att.w2", Dw, C);
      s.add(b + "att.a0", {C, 1, 1}, -1.0f, 1.0f);
      s.mat(b + "att.a1", C, Dw);
      s.mat(b + "att.a2", Dw, C);
      if (l > 0) {
        s.add(b + "att.v0", {C, 1, 1}, -1.0f, 1.0f);
        s.mat(b + "att.v1", C, Dv);
        s.mat(b + "att.v2", Dv, C);
      }
      s.mat(b + "att.g1", C, Dg);
      s.mat(b + "att.g2", Dg, C);
      s.add(b + "att.k_k", {C, 1, 1}, 0.5f, 1.0f);
      s.add(b + "att.k_a", {C, 1, 1}, 0.5f, 1.0f);
      s.add(b + "att.r_k", {S, H}, -0.5f, 0.5f);
      s.add(b + "ffn.x_k", {C, 1, 1}, 0.2f, 0.8f);
    }
    std::fprintf(stderr, "\rsynth: layer %" PRId64 "/%" PRId64, l + 1, sh->layers);
  }
  std::fprintf(stderr, "\n");
  Status st = finalize_model_file(mf, /*keep_scalars=*/false);
  if (!st.ok()) return fail("synth", st);
  mf.metadata["general.name"] = std::string("synthetic ") + sh->name + " (random weights)";
  GgufWriteOptions opt;
  opt.matrix_type = target;
  st = write_gguf(mf, out, opt);
  if (!st.ok()) return fail("synth", st);
  std::fprintf(stderr, "wrote %s (RWKV v%s, %s)\n", out.c_str(), version_name(sh->version), dtype.c_str());
  return 0;
}

}  // namespace rwkv::cli
