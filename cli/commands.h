// The subcommands of rwkv-edge. Each takes the arguments after its name and returns the exit
// code: 0 success, 1 failure (message on stderr), 2 bad usage.
#pragma once

namespace rwkv::cli {

int cmd_info(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_logits(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_convert(int argc, char** argv);
int cmd_synth(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_serve(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_loadgen(int argc, char** argv);
int cmd_compress(int argc, char** argv);

}  // namespace rwkv::cli
