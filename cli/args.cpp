#include "cli/args.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "kernels/kernels.h"

namespace rwkv::cli {

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

void ArgParser::add_string(const std::string& flag, const std::string& meta, const std::string& help,
                           std::string* out, bool required) {
  Opt o{flag, meta, help, [out](const std::string& v) { *out = v; return Status::OK(); }};
  o.required = required;
  if (!out->empty()) o.default_text = *out;
  opts_.push_back(std::move(o));
}

void ArgParser::add_int(const std::string& flag, const std::string& meta, const std::string& help, int64_t* out,
                        int64_t min_value, int64_t max_value) {
  Opt o{flag, meta, help, [flag, out, min_value, max_value](const std::string& v) {
          char* end = nullptr;
          errno = 0;
          const long long x = std::strtoll(v.c_str(), &end, 10);
          if (v.empty() || *end != '\0' || errno != 0) {
            return Status::InvalidArgument(flag + ": '" + v + "' is not an integer");
          }
          if (x < min_value || x > max_value) {
            return Status::InvalidArgument(flag + ": " + v + " is out of range [" + std::to_string(min_value) + ", " +
                                           std::to_string(max_value) + "]");
          }
          *out = x;
          return Status::OK();
        }};
  o.default_text = std::to_string(*out);
  opts_.push_back(std::move(o));
}

void ArgParser::add_float(const std::string& flag, const std::string& meta, const std::string& help, double* out,
                          double min_value, double max_value) {
  Opt o{flag, meta, help, [flag, out, min_value, max_value](const std::string& v) {
          char* end = nullptr;
          errno = 0;
          const double x = std::strtod(v.c_str(), &end);
          if (v.empty() || *end != '\0' || errno != 0 || !std::isfinite(x)) {
            return Status::InvalidArgument(flag + ": '" + v + "' is not a number");
          }
          if (x < min_value || x > max_value) {
            std::ostringstream os;
            os << flag << ": " << v << " is out of range [" << min_value << ", " << max_value << "]";
            return Status::InvalidArgument(os.str());
          }
          *out = x;
          return Status::OK();
        }};
  std::ostringstream os;
  os << *out;
  o.default_text = os.str();
  opts_.push_back(std::move(o));
}

void ArgParser::add_flag(const std::string& flag, const std::string& help, bool* out) {
  Opt o{flag, "", help, [out](const std::string&) { *out = true; return Status::OK(); }};
  o.takes_value = false;
  opts_.push_back(std::move(o));
}

void ArgParser::add_list(const std::string& flag, const std::string& meta, const std::string& help,
                         std::vector<std::string>* out) {
  opts_.push_back(Opt{flag, meta, help, [out](const std::string& v) { out->push_back(v); return Status::OK(); }});
}

void ArgParser::add_positional(const std::string& meta, const std::string& help, std::string* out, bool required) {
  pos_.push_back(Pos{meta, help, out, required});
}

Status ArgParser::parse(int argc, char** argv, int first) {
  size_t next_pos = 0;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      help_ = true;
      return Status::OK();
    }
    if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
      std::string value;
      bool has_inline = false;
      const size_t eq = a.find('=');
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_inline = true;
      }
      Opt* opt = nullptr;
      for (Opt& o : opts_) {
        if (o.flag == a) opt = &o;
      }
      if (opt == nullptr) return Status::InvalidArgument("unknown option " + a + " (see " + command_ + " --help)");
      if (opt->takes_value && !has_inline) {
        if (i + 1 >= argc) return Status::InvalidArgument(a + " needs a value (" + opt->meta + ")");
        value = argv[++i];
      }
      Status st = opt->set(value);
      if (!st.ok()) return st;
      opt->seen = true;
      continue;
    }
    if (next_pos >= pos_.size()) return Status::InvalidArgument("unexpected argument '" + a + "' (see " + command_ + " --help)");
    *pos_[next_pos++].out = a;
  }
  for (size_t p = next_pos; p < pos_.size(); ++p) {
    if (pos_[p].required) return Status::InvalidArgument("missing " + pos_[p].meta + " (see " + command_ + " --help)");
  }
  for (const Opt& o : opts_) {
    if (o.required && !o.seen) return Status::InvalidArgument("missing " + o.flag + " " + o.meta + " (see " + command_ + " --help)");
  }
  return Status::OK();
}

std::string ArgParser::usage() const {
  std::ostringstream os;
  os << "usage: " << command_;
  for (const Pos& p : pos_) os << (p.required ? " " : " [") << p.meta << (p.required ? "" : "]");
  if (!opts_.empty()) os << " [options]";
  os << "\n\n" << summary_ << "\n";
  if (!pos_.empty()) {
    os << "\narguments:\n";
    for (const Pos& p : pos_) os << "  " << p.meta << std::string(p.meta.size() < 26 ? 26 - p.meta.size() : 1, ' ') << p.help << "\n";
  }
  os << "\noptions:\n";
  for (const Opt& o : opts_) {
    std::string left = o.flag + (o.meta.empty() ? "" : " " + o.meta);
    os << "  " << left << std::string(left.size() < 26 ? 26 - left.size() : 1, ' ') << o.help;
    if (o.required) os << " (required)";
    else if (!o.default_text.empty()) os << " (default: " << o.default_text << ")";
    os << "\n";
  }
  os << "  -h, --help                show this help\n";
  return os.str();
}

void apply_threads(int64_t threads) { kern::set_num_threads((int)threads); }

std::string default_model_path() {
  if (const char* env = std::getenv("RWKV_EDGE_MODEL"); env != nullptr && *env != '\0') return env;
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n > 0) {
    buf[n] = '\0';
    const fs::path exe_dir = fs::path(buf).parent_path();
    candidates.push_back(exe_dir / "models" / "default.gguf");
    candidates.push_back(exe_dir.parent_path() / "models" / "default.gguf");
    candidates.push_back(exe_dir.parent_path() / "share" / "rwkv-edge" / "default.gguf");
  }
  candidates.push_back(fs::path(RWKV_EDGE_SOURCE_DIR) / "models" / "default.gguf");
  for (const fs::path& p : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  return "";
}

}  // namespace rwkv::cli
