// eval: perplexity / bits per byte on a text file, LAMBADA, and drift against a reference model.
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/eval.h"

namespace rwkv::cli {
namespace {

// Progress on stderr, at most ~4 times a second, only when stderr is a terminal or forced.
EvalProgress make_progress(const char* what, bool enabled) {
  if (!enabled) return nullptr;
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  auto start = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  return [what, last, start](int64_t done, int64_t total) {
    const auto now = std::chrono::steady_clock::now();
    if (done < total && now - *last < std::chrono::milliseconds(250)) return;
    *last = now;
    const double secs = std::chrono::duration<double>(now - *start).count();
    const double rate = secs > 0 ? (double)done / secs : 0.0;
    const double eta = rate > 0 ? (double)(total - done) / rate : 0.0;
    std::fprintf(stderr, "\r%s: %" PRId64 "/%" PRId64 " (%.0f/s, ETA %.0f s)   ", what, done, total, rate, eta);
    if (done >= total) std::fprintf(stderr, "\n");
  };
}

std::string fmt_bytes(double b) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.0f", b);
  return buf;
}

void add_bytes_json(const WeightBytes& w, size_t file_estimate, nlohmann::json& out) {
  out["weight_bytes_per_token"] = w.per_token;
  out["weight_bytes_per_token_file_estimate"] = file_estimate;
  out["weight_bytes"] = {{"embedding", w.embedding}, {"head", w.head}, {"ffn_sparse", w.ffn_sparse}, {"rest", w.rest}};
  out["head_row_fraction"] = w.head_row_fraction;
  out["head_clusters_per_token"] = w.head_clusters;
  out["ffn_active_fraction"] = w.ffn_active;
}

void print_bytes(const WeightBytes& w, size_t file_estimate) {
  std::printf("weight bytes/token: %s measured (file estimate %zu): head %s, sparse FFN %s, rest %s, embedding row %s\n",
              fmt_bytes(w.per_token).c_str(), file_estimate, fmt_bytes(w.head).c_str(), fmt_bytes(w.ffn_sparse).c_str(),
              fmt_bytes(w.rest).c_str(), fmt_bytes(w.embedding).c_str());
  if (w.head_clusters > 0) {
    std::printf("clustered head:   %.1f clusters, %.2f%% of head rows per token\n", w.head_clusters,
                100.0 * w.head_row_fraction);
  }
  std::string layers;
  for (size_t l = 0; l < w.ffn_active.size(); ++l) {
    if (w.ffn_active[l] < 0) continue;
    char buf[48];
    std::snprintf(buf, sizeof(buf), "%s%zu:%.3f", layers.empty() ? "" : " ", l, w.ffn_active[l]);
    layers += buf;
  }
  if (!layers.empty()) std::printf("FFN active:       %s (layer:fraction of neurons read)\n", layers.c_str());
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  ArgParser p("rwkv-edge eval",
              "Measure a model. With --text-file: per-token perplexity, bits per byte and tokens/s (the whole\n"
              "file is tokenized once and fed from a fresh state; token t+1 is scored given tokens 0..t).\n"
              "With --reference B as well: mean KL(P_B || P_M) per token and top-1 agreement with model B.\n"
              "With --lambada FILE.jsonl: LAMBADA (OpenAI) last-word accuracy (every target token greedy)\n"
              "and perplexity, as lm-evaluation-harness defines them.\n"
              "On a text, the weight bytes the model touched per token are measured as the engine read them:\n"
              "one embedding row, a clustered head's chosen rows, a sparse channel mix's active rows and the\n"
              "predictors it ran, every other tensor in full. --head-* and --ffn-* override a compressed\n"
              "model's run-time settings (the measured model only, not the reference).");
  std::string model, reference, text_file, lambada;
  int64_t threads = 0, chunk = 64, max_tokens = 0, max_items = 0;
  bool json_out = false, quiet = false;
  double head_p_min = -1, ffn_q = -1, ffn_tau = -1;
  int64_t head_k_min = -1, head_k_max = -1;
  bool head_uniform_tail = false;
  p.add_string("--model", "M", "model to measure (default: the embedded default model)", &model);
  p.add_string("--reference", "B", "reference model for KL / top-1 agreement", &reference);
  p.add_string("--text-file", "F", "text for perplexity (or drift)", &text_file);
  p.add_string("--lambada", "FILE.jsonl", "LAMBADA test set, one {\"text\": ...} per line", &lambada);
  p.add_int("--max-tokens", "N", "score only the first N tokens of the text (0 = all)", &max_tokens, 0, INT64_MAX);
  p.add_int("--max-items", "N", "use only the first N LAMBADA items (0 = all)", &max_items, 0, INT64_MAX);
  p.add_int("--chunk", "N", "tokens per forward pass", &chunk, 1, 4096);
  p.add_int("--threads", "N", "threads (0 = physical cores)", &threads, 0, 1024);
  p.add_float("--head-p-min", "P", "clustered head: take clusters until their mass reaches P (1 = every cluster, "
              "the dense logits; -1 = the file's)", &head_p_min, -1.0, 1.0);
  p.add_int("--head-k-min", "N", "clustered head: at least N clusters (-1 = the file's)", &head_k_min, -1, INT64_MAX);
  p.add_int("--head-k-max", "N", "clustered head: at most N clusters (-1 = the file's)", &head_k_max, -1, INT64_MAX);
  p.add_flag("--head-uniform-tail", "clustered head: spread unchosen clusters' mass evenly (the paper's formula) even "
             "when the file has a per-token prior (compress --head-prior)", &head_uniform_tail);
  p.add_float("--ffn-q", "Q", "sparse FFN layers: quantile q of the 1-bit predictor for every layer (0 = every "
              "neuron, the dense result; -1 = the file's per layer)", &ffn_q, -1.0, 1.0);
  p.add_float("--ffn-mlp-threshold", "T", "sparse FFN layers: MLP sigmoid threshold in (0, 1), 1 = MLP off "
              "(-1 = the file's per layer)", &ffn_tau, -1.0, 1.0);
  p.add_flag("--json", "print the result as one JSON object", &json_out);
  p.add_flag("--quiet", "no progress on stderr", &quiet);
  if (int rc = parse_args(p, argc, argv); rc >= 0) return rc;
  if (text_file.empty() == lambada.empty()) {
    std::fprintf(stderr, "error: give exactly one of --text-file or --lambada\n");
    return 2;
  }
  if (!reference.empty() && text_file.empty()) {
    std::fprintf(stderr, "error: --reference needs --text-file\n");
    return 2;
  }
  apply_threads(threads);
  Result<std::string> path = resolve_model_path(model);
  if (!path.ok()) return fail("eval", path.status());
  LoadOptions lo;
  lo.head_p_min = head_p_min;
  lo.head_k_min = head_k_min;
  lo.head_k_max = head_k_max;
  lo.head_uniform_tail = head_uniform_tail;
  lo.ffn_q = ffn_q;
  lo.ffn_mlp_threshold = ffn_tau;
  Result<std::shared_ptr<Model>> m = load_model(path.value(), lo);
  if (!m.ok()) return fail("eval", m.status());
  Result<std::unique_ptr<Tokenizer>> tok = model_tokenizer(**m);
  if (!tok.ok()) return fail("eval", tok.status());
  nlohmann::json out = {{"model", path.value()}};

  if (!text_file.empty()) {
    Result<std::string> text = read_text_file(text_file);
    if (!text.ok()) return fail("eval", text.status());
    std::vector<int32_t> ids = (*tok)->encode(text.value());
    int64_t bytes = (int64_t)text->size();
    if (max_tokens > 0 && (int64_t)ids.size() > max_tokens) {
      ids.resize((size_t)max_tokens);
      bytes = (int64_t)(*tok)->decode(ids).size();
    }
    if (ids.size() < 2) return fail("eval", Status::InvalidArgument(text_file + ": fewer than 2 tokens"));
    out["text_file"] = text_file;
    out["tokens"] = ids.size();
    out["bytes"] = bytes;
    const size_t file_estimate = (*m)->weight_bytes_per_token();
    if (reference.empty()) {
      BytesMeter meter(**m);
      Result<PerplexityResult> r = eval_perplexity(**m, ids, bytes, chunk, make_progress("eval", !quiet));
      if (!r.ok()) return fail("eval", r.status());
      const WeightBytes wb = meter.result(r->tokens_scored);
      add_bytes_json(wb, file_estimate, out);
      out["perplexity"] = r->perplexity;
      out["bits_per_byte"] = r->bits_per_byte;
      out["mean_nll"] = r->total_nll / (double)r->tokens_scored;
      out["tokens_scored"] = r->tokens_scored;
      out["tokens_per_second"] = (double)r->tokens_scored / r->seconds;
      if (!json_out) {
        std::printf("text:           %s (%zu tokens, %" PRId64 " bytes)\n", text_file.c_str(), ids.size(), bytes);
        std::printf("perplexity:     %.4f per token (%" PRId64 " tokens scored)\n", r->perplexity, r->tokens_scored);
        std::printf("bits per byte:  %.4f\n", r->bits_per_byte);
        std::printf("speed:          %.1f tokens/s\n", (double)r->tokens_scored / r->seconds);
        print_bytes(wb, file_estimate);
      }
    } else {
      Result<std::shared_ptr<Model>> ref = load_model(reference);
      if (!ref.ok()) return fail("eval", ref.status());
      if ((*ref)->file().tokenizer.data != (*m)->file().tokenizer.data ||
          (*ref)->file().tokenizer.kind != (*m)->file().tokenizer.kind) {
        return fail("eval", Status::InvalidArgument(reference + ": the reference model has a different tokenizer"));
      }
      BytesMeter meter(**m);
      Result<DriftResult> r = eval_drift(**m, **ref, ids, chunk, make_progress("drift", !quiet));
      if (!r.ok()) return fail("eval", r.status());
      const WeightBytes wb = meter.result(r->tokens);
      add_bytes_json(wb, file_estimate, out);
      out["reference"] = reference;
      out["mean_kl"] = r->mean_kl;
      out["top1_agreement"] = r->top1_agreement;
      out["perplexity"] = r->model_perplexity;
      out["reference_perplexity"] = r->reference_perplexity;
      if (!json_out) {
        std::printf("text:             %s (%zu tokens)\n", text_file.c_str(), ids.size());
        std::printf("mean KL(ref||m):  %.6f nats per token\n", r->mean_kl);
        std::printf("top-1 agreement:  %.4f\n", r->top1_agreement);
        std::printf("perplexity:       %.4f (reference %.4f)\n", r->model_perplexity, r->reference_perplexity);
        print_bytes(wb, file_estimate);
      }
    }
  } else {
    std::ifstream f(lambada);
    if (!f) return fail("eval", Status::NotFound(lambada + ": cannot open"));
    std::vector<LambadaItem> items;
    std::string line;
    int64_t lineno = 0;
    while (std::getline(f, line)) {
      ++lineno;
      if (line.empty()) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.contains("text") || !j["text"].is_string()) {
        return fail("eval", Status::InvalidArgument(lambada + ":" + std::to_string(lineno) + ": not a {\"text\": ...} line"));
      }
      std::string ctx, target;
      if (!split_lambada(j["text"].get<std::string>(), &ctx, &target)) continue;
      // lm-evaluation-harness: the continuation's tokens are those of context+target after
      // the context's own tokens (falling back to encoding the target alone).
      LambadaItem it;
      it.context = (*tok)->encode(ctx);
      const std::vector<int32_t> whole = (*tok)->encode(ctx + target);
      if (whole.size() > it.context.size() && std::equal(it.context.begin(), it.context.end(), whole.begin())) {
        it.target.assign(whole.begin() + (std::ptrdiff_t)it.context.size(), whole.end());
      } else {
        it.target = (*tok)->encode(target);
      }
      items.push_back(std::move(it));
      if (max_items > 0 && (int64_t)items.size() >= max_items) break;
    }
    if (items.empty()) return fail("eval", Status::InvalidArgument(lambada + ": no items"));
    Result<LambadaResult> r = eval_lambada(**m, items, make_progress("lambada", !quiet));
    if (!r.ok()) return fail("eval", r.status());
    out["lambada"] = lambada;
    out["items"] = r->items;
    out["accuracy"] = r->accuracy;
    out["perplexity"] = r->perplexity;
    if (!json_out) {
      std::printf("LAMBADA:     %s (%" PRId64 " items)\n", lambada.c_str(), r->items);
      std::printf("accuracy:    %.4f (%" PRId64 " correct)\n", r->accuracy, r->correct);
      std::printf("perplexity:  %.3f\n", r->perplexity);
      std::printf("time:        %.1f s\n", r->seconds);
    }
  }
  if (json_out) std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace rwkv::cli
