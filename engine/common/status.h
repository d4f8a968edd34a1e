// Status and Result<T>: how errors travel through engine/ and server/.
//
//   Result<ModelFile> r = load_model_file(path);
//   if (!r.ok()) { fprintf(stderr, "%s\n", r.status().to_string().c_str()); return 1; }
//   ModelFile& mf = r.value();
//
// No exceptions cross module boundaries; functions return Status or Result<T> and callers
// return early. The code is stable for programs (HTTP mapping), the message is for humans and
// names the file / tensor / field that is wrong.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace rwkv {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // the caller's input is wrong (bad flag, bad JSON value, bad text)
  kNotFound,           // a file, tensor, session or model that does not exist
  kCorruption,         // a file is damaged: truncated, wrong magic, inconsistent sizes
  kUnsupported,        // well-formed but not something we run (a removed quant type, say)
  kResourceExhausted,  // out of memory budget, queue full
  kUnavailable,        // not ready yet / shutting down
  kInternal,           // a bug: an invariant failed
  kIOError,            // the OS refused a read or write
  kConflict,           // the thing is busy / in a state that forbids the call (session in use)
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string msg) { return Status(StatusCode::kInvalidArgument, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(StatusCode::kNotFound, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(StatusCode::kCorruption, std::move(msg)); }
  static Status Unsupported(std::string msg) { return Status(StatusCode::kUnsupported, std::move(msg)); }
  static Status ResourceExhausted(std::string msg) { return Status(StatusCode::kResourceExhausted, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(StatusCode::kUnavailable, std::move(msg)); }
  static Status Internal(std::string msg) { return Status(StatusCode::kInternal, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(StatusCode::kIOError, std::move(msg)); }
  static Status Conflict(std::string msg) { return Status(StatusCode::kConflict, std::move(msg)); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "Corruption: model.bin: tensor 'blocks.0.att.key.weight': data runs past end of file"
  std::string to_string() const;
  // Returns a copy whose message is prefixed with `context + ": "`.
  Status with_context(const std::string& context) const;

 private:
  Status(StatusCode code, std::string msg) : code_(code), message_(std::move(msg)) {}
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or the Status saying why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit on purpose
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit on purpose
    assert(!status_.ok() && "Result constructed from an OK status without a value");
    if (status_.ok()) status_ = Status::Internal("Result built from OK status without value");
  }
  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  // REQUIRES: ok()
  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace rwkv
