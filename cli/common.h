// Helpers shared by the subcommands: argument parsing with --help, model and tokenizer loading
// with errors on stderr, and reading whole files.
#pragma once

#include <memory>
#include <string>

#include "cli/args.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"

namespace rwkv::cli {

// Parses; prints help (returns 0) or the error plus usage hint (returns 2). -1 = continue.
int parse_args(ArgParser& p, int argc, char** argv);
// Prints "rwkv-edge <cmd>: <status>" to stderr and returns 1.
int fail(const char* cmd, const Status& st);

// Resolves --model: the given path, else the default model; NotFound with advice otherwise.
Result<std::string> resolve_model_path(const std::string& given);
Result<std::shared_ptr<Model>> load_model(const std::string& path, const LoadOptions& opt = {});
// The model's own tokenizer; FailedPrecondition-like InvalidArgument when it has none.
Result<std::unique_ptr<Tokenizer>> model_tokenizer(const Model& m);
Result<std::string> read_text_file(const std::string& path);

}  // namespace rwkv::cli
