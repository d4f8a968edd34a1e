// A small command-line parser for the rwkv-edge subcommands.
//
//   ArgParser p("rwkv-edge logits", "Write the logits after every token of a text file.");
//   std::string model; p.add_string("--model", "M", "model file", &model, /*required=*/true);
//   if (Status s = p.parse(argc, argv); !s.ok()) ...; if (p.help_requested()) ...
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/common/status.h"

namespace rwkv::cli {

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);

  void add_string(const std::string& flag, const std::string& meta, const std::string& help, std::string* out,
                  bool required = false);
  void add_int(const std::string& flag, const std::string& meta, const std::string& help, int64_t* out,
               int64_t min_value, int64_t max_value);
  void add_float(const std::string& flag, const std::string& meta, const std::string& help, double* out,
                 double min_value, double max_value);
  void add_flag(const std::string& flag, const std::string& help, bool* out);
  // A repeatable flag (each use appends).
  void add_list(const std::string& flag, const std::string& meta, const std::string& help,
                std::vector<std::string>* out);
  // Positional arguments, in order; `required` ones must be present.
  void add_positional(const std::string& meta, const std::string& help, std::string* out, bool required = true);

  // Parses argv[first..argc). InvalidArgument names the bad flag or value.
  Status parse(int argc, char** argv, int first = 0);
  bool help_requested() const { return help_; }
  std::string usage() const;

 private:
  struct Opt {
    std::string flag, meta, help;
    std::function<Status(const std::string&)> set;
    bool takes_value = true;
    bool required = false;
    bool seen = false;
    std::string default_text;
  };
  struct Pos {
    std::string meta, help;
    std::string* out;
    bool required;
  };
  std::string command_, summary_;
  std::vector<Opt> opts_;
  std::vector<Pos> pos_;
  bool help_ = false;
};

// Shared by the subcommands: "--threads N" applied to the kernels.
void apply_threads(int64_t threads);

// The default model when --model is not given: $RWKV_EDGE_MODEL, else models/default.gguf
// next to the executable's source tree or installed share dir. Empty when none exists.
std::string default_model_path();

}  // namespace rwkv::cli
