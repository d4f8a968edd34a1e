// Black-box tests of `rwkv-edge compress`: a working run on a tiny model, and clear errors with
// nonzero exit codes for bad usage.
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "engine/model.h"
#include "tests/cli/cli_run.h"
#include "tests/common/test_util.h"

namespace rwkv {
namespace {

using Run = test::CliRun;

Run run(const std::string& args) { return test::run_cli("compress " + args); }

// The tiny 5.2 model as a GGUF with the byte tokenizer, and a calibration text.
struct Fixture {
  test::TempDir dir;
  std::string model, calib;
  Fixture() {
    Result<ModelFile> mf = open_model_file(test::tiny_model("tiny-rwkv-5v2-730K-FP16.bin"));
    REQUIRE(mf.ok());
    mf->tokenizer.kind = "bytes";
    model = dir.file("tiny.gguf");
    GgufWriteOptions wo;
    wo.keep_types = true;
    REQUIRE(write_gguf(mf.value(), model, wo).ok());
    const std::vector<uint8_t> text = test::read_bytes(test::shared_dir() + "/data/tiny-shakespeare/input.txt");
    calib = dir.file("calib.txt");
    test::write_bytes(calib, text.data(), 4000);
  }
};

}  // namespace

TEST_CASE("compress writes a loadable model with its settings in the metadata") {
  Fixture f;
  const std::string out = f.dir.file("out.gguf");
  Run r = run(f.model + " " + out + " --calib " + f.calib + " --heldout " + f.calib +
              " --lowrank aware --rank-factor 4 --rank 'blocks.0.att.key=full' --int8 row --quiet");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("blocks.0.att.key") != std::string::npos);
  Result<ModelFile> mf = open_model_file(out);
  REQUIRE(mf.ok());
  CHECK(mf->metadata["rwkv_edge.compress.lowrank"] == "aware");
  CHECK(mf->metadata["rwkv_edge.compress.int8"] == "row");
  CHECK(mf->metadata["rwkv_edge.compress.lowrank.rank_factor"] == "4");
  CHECK(mf->find("blocks.1.att.key.lr_a")->type == DType::kI8R);
  CHECK(mf->find("blocks.0.att.key.lr_a")->ne[1] == mf->hparams.n_embd);  // full rank override
  CHECK(Model::load(out, {}).ok());
}

TEST_CASE("eval measures bytes touched per token; --head-p-min 1 / --ffn-q 0 give the dense result") {
  Fixture f;
  const std::string out = f.dir.file("hf.gguf");
  Run c = run(f.model + " " + out + " --calib " + f.calib +
              " --lowrank none --head-clusters 8 --head-epochs 1 --head-p-min 0.5 --ffn-predict --ffn-no-mlp --ffn-q 0.5"
              " --quiet");
  INFO(c.out);
  REQUIRE(c.exit_code == 0);
  auto eval = [&](const std::string& model, const std::string& extra) {
    return test::run_cli("eval --model " + model + " --reference " + f.model + " --text-file " + f.calib +
                         " --max-tokens 300 --json --quiet " + extra);
  };
  auto number = [](const std::string& json, const std::string& key) {
    const size_t at = json.find("\"" + key + "\":");
    REQUIRE_MESSAGE(at != std::string::npos, key);
    return std::stod(json.substr(at + key.size() + 3));
  };
  Run dense = eval(f.model, "");
  Run sparse = eval(out, "");
  Run lossless = eval(out, "--head-p-min 1 --ffn-q 0");
  INFO(dense.out, sparse.out, lossless.out);
  REQUIRE(dense.exit_code == 0);
  REQUIRE(sparse.exit_code == 0);
  REQUIRE(lossless.exit_code == 0);
  const double bd = number(dense.out, "weight_bytes_per_token");
  CHECK(number(sparse.out, "weight_bytes_per_token") < 0.8 * bd);
  CHECK(number(sparse.out, "head_row_fraction") < 1.0);
  CHECK(number(sparse.out, "mean_kl") > 1e-4);
  // Every head row and every neuron: the dense logits, and (1-bit copies unused) the dense bytes
  // plus only the cluster head's tensors.
  CHECK(number(lossless.out, "head_row_fraction") == doctest::Approx(1.0));
  CHECK(number(lossless.out, "mean_kl") < 1e-6);
  CHECK(number(lossless.out, "top1_agreement") == doctest::Approx(1.0));
  CHECK(number(lossless.out, "weight_bytes_per_token") >= bd);
  CHECK(number(lossless.out, "weight_bytes_per_token") < 1.1 * bd);
  Run bad = eval(out, "--head-p-min 2");
  CHECK(bad.exit_code == 2);
  CHECK(bad.out.find("--head-p-min") != std::string::npos);
}

TEST_CASE("compress errors are clear and exit nonzero") {
  Fixture f;
  const std::string out = f.dir.file("out.gguf");
  SUBCASE("missing --calib") {
    Run r = run(f.model + " " + out);
    CHECK(r.exit_code == 2);
    CHECK(r.out.find("--calib") != std::string::npos);
  }
  SUBCASE("bad rank") {
    Run r = run(f.model + " " + out + " --calib " + f.calib + " --rank blocks.0.att.key=abc");
    CHECK(r.exit_code == 2);
    CHECK(r.out.find("blocks.0.att.key=abc") != std::string::npos);
    r = run(f.model + " " + out + " --calib " + f.calib + " --rank nonsense");
    CHECK(r.exit_code == 2);
    CHECK(r.out.find("NAME=R") != std::string::npos);
  }
  SUBCASE("bad method") {
    Run r = run(f.model + " " + out + " --calib " + f.calib + " --lowrank fancy");
    CHECK(r.exit_code == 2);
    CHECK(r.out.find("--lowrank") != std::string::npos);
  }
  SUBCASE("fisher without, or with unreadable, gradient statistics; statistics without fisher") {
    Run r = run(f.model + " " + out + " --calib " + f.calib + " --lowrank fisher");
    CHECK(r.exit_code == 2);
    CHECK(r.out.find("--grad-stats") != std::string::npos);
    r = run(f.model + " " + out + " --calib " + f.calib + " --lowrank fisher --grad-stats " + f.calib);
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("calib.txt") != std::string::npos);
    CHECK(r.out.find("RWKVEGS1") != std::string::npos);
    r = run(f.model + " " + out + " --calib " + f.calib + " --lowrank aware --grad-stats " + f.calib);
    CHECK(r.exit_code == 2);
    CHECK(r.out.find("only used by --lowrank fisher") != std::string::npos);
  }
  SUBCASE("bad rank allocation") {
    Run r = run(f.model + " " + out + " --calib " + f.calib + " --rank-alloc greedy");
    CHECK(r.exit_code == 2);
    CHECK(r.out.find("--rank-alloc") != std::string::npos);
    r = run(f.model + " " + out + " --calib " + f.calib + " --rank-alloc spectrum --energy 0.9");
    CHECK(r.exit_code == 2);
    CHECK(r.out.find("--energy") != std::string::npos);
  }
  SUBCASE("unreadable input model") {
    Run r = run(f.dir.file("nope.gguf") + " " + out + " --calib " + f.calib);
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("nope.gguf") != std::string::npos);
  }
  SUBCASE("unreadable calibration text") {
    Run r = run(f.model + " " + out + " --calib " + f.dir.file("missing.txt"));
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("missing.txt") != std::string::npos);
  }
  SUBCASE("targets that match nothing") {
    Run r = run(f.model + " " + out + " --calib " + f.calib + " --lowrank-targets att.nothing");
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("att.nothing") != std::string::npos);
  }
}

}  // namespace rwkv
