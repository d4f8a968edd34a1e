// rwkv-edge: one executable, many subcommands. main() only dispatches.
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int argc, char** argv);
  const char* summary;
};

const Command kCommands[] = {
    {"info", rwkv::cli::cmd_info, "show a model's version, shapes and bytes by component"},
    {"generate", rwkv::cli::cmd_generate, "generate text from a prompt, streamed to stdout"},
    {"logits", rwkv::cli::cmd_logits, "write the logits after every token of a text file (f32)"},
    {"tokenize", rwkv::cli::cmd_tokenize, "print the token ids of a text file as a JSON array"},
    {"convert", rwkv::cli::cmd_convert, "convert rwkv.cpp .bin / safetensors / GGUF to GGUF or rwkv.cpp"},
    {"compress", rwkv::cli::cmd_compress, "compress a model: low-rank projections, INT8 (RWKV-Lite, issue 6)"},
    {"synth", rwkv::cli::cmd_synth, "write a random-weight model of a published shape (benchmarks)"},
    {"eval", rwkv::cli::cmd_eval, "perplexity, bits per byte, LAMBADA, KL / top-1 agreement against a reference"},
    {"bench", rwkv::cli::cmd_bench, "measure prefill and decode speed of a model"},
    {"serve", rwkv::cli::cmd_serve, "serve a model over an OpenAI-style HTTP API"},
    {"loadgen", rwkv::cli::cmd_loadgen, "load-test a running server: concurrency, TTFT, inter-token latency"},
};

void print_usage(FILE* out) {
  std::fprintf(out, "usage: rwkv-edge <command> [options]\n\nRWKV v4/v5/v6/v7 inference for small boards.\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(out, "\n'rwkv-edge <command> --help' shows the options of a command.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    print_usage(stdout);
    return 0;
  }
  for (const Command& c : kCommands) {
    if (cmd == c.name) return c.run(argc - 2, argv + 2);
  }
  std::fprintf(stderr, "rwkv-edge: unknown command '%s'\n\n", cmd.c_str());
  print_usage(stderr);
  return 2;
}
