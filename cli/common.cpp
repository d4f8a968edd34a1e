#include "cli/common.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace rwkv::cli {

int parse_args(ArgParser& p, int argc, char** argv) {
  Status st = p.parse(argc, argv);
  if (!st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.message().c_str());
    return 2;
  }
  if (p.help_requested()) {
    std::fputs(p.usage().c_str(), stdout);
    return 0;
  }
  return -1;
}

int fail(const char* cmd, const Status& st) {
  std::fprintf(stderr, "rwkv-edge %s: %s\n", cmd, st.to_string().c_str());
  return 1;
}

Result<std::string> resolve_model_path(const std::string& given) {
  if (!given.empty()) return given;
  const std::string def = default_model_path();
  if (def.empty()) {
    return Status::NotFound("no --model given and no default model found (set RWKV_EDGE_MODEL or put one at models/default.gguf)");
  }
  return def;
}

Result<std::shared_ptr<Model>> load_model(const std::string& path, const LoadOptions& opt) {
  return Model::load(path, opt);
}

Result<std::unique_ptr<Tokenizer>> model_tokenizer(const Model& m) {
  const TokenizerSpec& spec = m.file().tokenizer;
  if (spec.kind.empty()) {
    return Status::InvalidArgument(m.file().path + ": the model carries no tokenizer; embed one with 'rwkv-edge convert IN OUT.gguf --tokenizer FILE'");
  }
  Result<std::unique_ptr<Tokenizer>> tok = make_tokenizer(spec);
  if (!tok.ok()) return tok.status().with_context(m.file().path + ": embedded tokenizer");
  return tok;
}

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::NotFound(path + ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return Status::IOError(path + ": read failed");
  return ss.str();
}

}  // namespace rwkv::cli
