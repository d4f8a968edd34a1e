// The embedded default model (models/default.gguf, issue #4): it loads with its tokenizer, has
// the shape models/README.md states, and greedy decoding continues an English prompt with
// English words. Guards against a broken or replaced default model file.
#include <doctest/doctest.h>

#include <cctype>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

using namespace rwkv;

std::string default_model() { return std::string(RWKV_EDGE_SOURCE_DIR) + "/models/default.gguf"; }

}  // namespace

TEST_CASE("default model: shape, tokenizer and an English greedy continuation") {
  Result<std::shared_ptr<Model>> m = Model::load(default_model(), {});
  REQUIRE_MESSAGE(m.ok(), m.status().message());
  const Model& model = *m.value();
  const Hparams& hp = model.hparams();
  CHECK(hp.version == RwkvVersion::kV5_2);
  CHECK(hp.n_layer == 6);
  CHECK(hp.n_embd == 256);
  CHECK(hp.n_vocab == 12288);
  CHECK(model.file().tokenizer.kind == "world");

  Result<std::unique_ptr<Tokenizer>> tok = make_tokenizer(model.file().tokenizer);
  REQUIRE(tok.ok());
  const Tokenizer& t = *tok.value();
  // The sub-vocabulary keeps World's byte ids (id = byte + 1) and "\n" = 11.
  CHECK(t.encode("\n") == std::vector<int32_t>{11});
  CHECK(t.decode(t.encode("And the king said")) == "And the king said");

  std::vector<int32_t> ids = t.encode("And the king said");
  State st = model.new_state();
  std::vector<float> logits((size_t)hp.n_vocab);
  REQUIRE(model.eval(st, ids.data(), ids.size(), logits.data()).ok());
  std::vector<int32_t> out;
  for (int i = 0; i < 24; ++i) {
    int32_t best = 0;
    for (int32_t v = 1; v < hp.n_vocab; ++v) {
      if (logits[(size_t)v] > logits[(size_t)best]) best = v;
    }
    out.push_back(best);
    REQUIRE(model.eval(st, &best, 1, logits.data()).ok());
  }
  const std::string text = t.decode(out);
  INFO("continuation: " << text);
  // English-like: mostly letters and spaces, several words, and a word the corpus is full of.
  size_t letters = 0, spaces = 0;
  for (unsigned char c : text) {
    letters += std::isalpha(c) != 0;
    spaces += c == ' ';
  }
  CHECK(letters >= text.size() * 6 / 10);
  CHECK(spaces >= 5);
  CHECK((text.find(" the ") != std::string::npos || text.find(" and ") != std::string::npos ||
         text.find(" of ") != std::string::npos));
}
