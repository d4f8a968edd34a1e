// info, logits, tokenize: commands that look at a model or its tokenizer.
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"

namespace rwkv::cli {
namespace {

// Which component a tensor belongs to, for `info`. Compressed models (issue 6) add low-rank
// factors, FFN activation predictors and the hierarchical head's cluster head.
std::string component_of(const std::string& name) {
  auto ends_with = [&](const char* suf) {
    const size_t n = std::strlen(suf);
    return name.size() >= n && name.compare(name.size() - n, n, suf) == 0;
  };
  if (name.rfind("head.cluster", 0) == 0) return "head.cluster";
  if (name.find(".ffn.pred.") != std::string::npos || ends_with(".ffn.key.sign")) return "ffn.predictors";
  if (ends_with(".lr_a") || ends_with(".lr_b")) return "low-rank factors";
  if (name == "emb.weight" || name.rfind("blocks.0.ln0", 0) == 0) return "embedding";
  if (name == "head.weight" || name.rfind("ln_out", 0) == 0) return "head";
  if (name.find(".att.") != std::string::npos) return "blocks.time_mix";
  if (name.find(".ffn.") != std::string::npos) return "blocks.channel_mix";
  return "blocks.norms";
}

std::string human_bytes(double b) {
  char buf[64];
  if (b >= 1e9) std::snprintf(buf, sizeof(buf), "%.2f GB", b / 1e9);
  else if (b >= 1e6) std::snprintf(buf, sizeof(buf), "%.2f MB", b / 1e6);
  else if (b >= 1e3) std::snprintf(buf, sizeof(buf), "%.1f kB", b / 1e3);
  else std::snprintf(buf, sizeof(buf), "%.0f B", b);
  return buf;
}

}  // namespace

int cmd_info(int argc, char** argv) {
  ArgParser p("rwkv-edge info", "Show a model's RWKV version, shapes, parameter counts and bytes by component.");
  std::string model;
  p.add_positional("MODEL", "model file (GGUF, rwkv.cpp .bin or safetensors)", &model);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;
  Result<ModelFile> mf = open_model_file(model);
  if (!mf.ok()) return fail("info", mf.status());
  const Hparams& hp = mf->hparams;
  std::printf("file:        %s (%s)\n", model.c_str(), mf->source_format.c_str());
  std::printf("version:     RWKV v%s\n", version_name(hp.version));
  std::printf("shape:       n_vocab %" PRId64 ", n_embd %" PRId64 ", n_layer %" PRId64 ", n_ffn %" PRId64, hp.n_vocab,
              hp.n_embd, hp.n_layer, hp.n_ffn);
  if (hp.n_head > 0) std::printf(", heads %" PRId64 " x %" PRId64, hp.n_head, hp.head_size);
  std::printf("\n");
  if (hp.version != RwkvVersion::kV4) std::printf("group norm:  eps %g\n", (double)hp.gn_eps);
  if (hp.rescale_every > 0) std::printf("rescale:     every %d layers\n", hp.rescale_every);
  std::printf("tokenizer:   %s\n", mf->tokenizer.kind.empty() ? "(none embedded)" : mf->tokenizer.kind.c_str());
  const State st(hp);
  std::printf("state:       %s per sequence\n", human_bytes((double)st.size_bytes()).c_str());
  struct Acc {
    int64_t params = 0;
    size_t bytes = 0;
    std::map<std::string, int64_t> by_type;
  };
  std::map<std::string, Acc> comp;
  Acc total;
  for (const TensorRef& t : mf->tensors) {
    Acc& a = comp[component_of(t.name)];
    a.params += t.n_elements();
    a.bytes += t.nbytes;
    a.by_type[dtype_name(t.type)] += t.n_elements();
    total.params += t.n_elements();
    total.bytes += t.nbytes;
  }
  std::printf("\n%-20s %14s %12s  %s\n", "component", "parameters", "bytes", "types (parameters)");
  for (const auto& [name, a] : comp) {
    std::string types;
    for (const auto& [ty, n] : a.by_type) types += (types.empty() ? "" : ", ") + ty + " " + std::to_string(n);
    std::printf("%-20s %14" PRId64 " %12s  %s\n", name.c_str(), a.params, human_bytes((double)a.bytes).c_str(), types.c_str());
  }
  std::printf("%-20s %14" PRId64 " %12s\n", "total", total.params, human_bytes((double)total.bytes).c_str());
  // Techniques, from the metadata `rwkv-edge compress` writes.
  std::string tech;
  for (const auto& [k, v] : mf->metadata) {
    const std::string pre = "rwkv_edge.compress.";
    if (k.rfind(pre, 0) != 0 || k.find('.', pre.size()) != std::string::npos) continue;
    const std::string key = k.substr(pre.size());
    if (key == "source" || key == "calib" || key == "calib_tokens" || v == "none" || v.empty()) continue;
    tech += (tech.empty() ? "" : ", ") + key + " " + v;
  }
  std::printf("compression: %s\n", tech.empty() ? "none" : tech.c_str());
  Result<std::shared_ptr<Model>> m = Model::from_file(mf.value(), {});
  if (m.ok()) {
    std::printf("weight bytes per token: %s\n", human_bytes((double)(*m)->weight_bytes_per_token()).c_str());
  }
  for (const auto& [k, v] : mf->metadata) {
    if (v.size() < 200) std::printf("meta %s = %s\n", k.c_str(), v.c_str());
  }
  return 0;
}

int cmd_logits(int argc, char** argv) {
  ArgParser p("rwkv-edge logits",
              "Tokenize a text file with the model's tokenizer (a byte-level model takes the file's bytes), feed\n"
              "the tokens one at a time from a fresh state and write the logits after every token as raw\n"
              "little-endian float32, shape [n_tokens, n_vocab]. This interface is kept stable: it is how the\n"
              "engine is checked against references.");
  std::string model, text_file, out;
  int64_t threads = 0;
  p.add_string("--model", "M", "model file", &model, true);
  p.add_string("--text-file", "F", "input text", &text_file, true);
  p.add_string("--out", "OUT.f32", "output file", &out, true);
  p.add_int("--threads", "N", "threads (0 = physical cores)", &threads, 0, 1024);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;
  apply_threads(threads);
  Result<std::shared_ptr<Model>> m = load_model(model);
  if (!m.ok()) return fail("logits", m.status());
  Result<std::unique_ptr<Tokenizer>> tok = model_tokenizer(**m);
  if (!tok.ok()) return fail("logits", tok.status());
  Result<std::string> text = read_text_file(text_file);
  if (!text.ok()) return fail("logits", text.status());
  const std::vector<int32_t> ids = (*tok)->encode(text.value());
  const int64_t V = (*m)->hparams().n_vocab;
  const std::string tmp = out + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return fail("logits", Status::IOError(tmp + ": cannot create: " + std::strerror(errno)));
  State st = (*m)->new_state();
  std::vector<float> logits((size_t)V);
  for (size_t i = 0; i < ids.size(); ++i) {
    Status s = (*m)->eval(st, &ids[i], 1, logits.data());
    if (!s.ok()) {
      std::fclose(f);
      std::remove(tmp.c_str());
      return fail("logits", s);
    }
    if (std::fwrite(logits.data(), sizeof(float), (size_t)V, f) != (size_t)V) {
      std::fclose(f);
      std::remove(tmp.c_str());
      return fail("logits", Status::IOError(tmp + ": write failed"));
    }
  }
  if (std::fflush(f) != 0 || fsync(fileno(f)) != 0 || std::fclose(f) != 0 || std::rename(tmp.c_str(), out.c_str()) != 0) {
    std::remove(tmp.c_str());
    return fail("logits", Status::IOError(out + ": write failed"));
  }
  std::fprintf(stderr, "wrote %zu x %" PRId64 " logits to %s\n", ids.size(), V, out.c_str());
  return 0;
}

int cmd_tokenize(int argc, char** argv) {
  ArgParser p("rwkv-edge tokenize",
              "Print the token ids of a text file as one JSON array. The tokenizer is the model's own\n"
              "(--model) or a file (--tokenizer): a World-format vocab .txt or a tokenizer.json, detected\n"
              "from its content.");
  std::string model, tokenizer, text_file;
  p.add_string("--model", "M", "take the tokenizer embedded in this model", &model);
  p.add_string("--tokenizer", "FILE", "World vocab .txt or tokenizer.json", &tokenizer);
  p.add_string("--text-file", "F", "input text", &text_file, true);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;
  if (model.empty() == tokenizer.empty()) {
    std::fprintf(stderr, "error: give exactly one of --model or --tokenizer\n");
    return 2;
  }
  std::unique_ptr<Tokenizer> tok;
  if (!model.empty()) {
    Result<ModelFile> mf = open_model_file(model);
    if (!mf.ok()) return fail("tokenize", mf.status());
    if (mf->tokenizer.kind.empty()) {
      return fail("tokenize", Status::InvalidArgument(model + ": the model carries no tokenizer"));
    }
    Result<std::unique_ptr<Tokenizer>> t = make_tokenizer(mf->tokenizer);
    if (!t.ok()) return fail("tokenize", t.status());
    tok = std::move(t).value();
  } else {
    Result<TokenizerSpec> spec = read_tokenizer_file(tokenizer);
    if (!spec.ok()) return fail("tokenize", spec.status());
    Result<std::unique_ptr<Tokenizer>> t = make_tokenizer(spec.value());
    if (!t.ok()) return fail("tokenize", t.status());
    tok = std::move(t).value();
  }
  Result<std::string> text = read_text_file(text_file);
  if (!text.ok()) return fail("tokenize", text.status());
  const std::vector<int32_t> ids = tok->encode(text.value());
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(ids[i]);
  }
  out += "]\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace rwkv::cli
