// Starts the real `rwkv-edge serve` on a free loopback port for black-box HTTP tests.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "tests/common/test_util.h"

namespace rwkv::test {

class ServerProcess {
 public:
  // `args` are appended to "serve --host 127.0.0.1 --port 0 --port-file F".
  explicit ServerProcess(std::vector<std::string> args, const std::string& log_file) {
    port_file_ = log_file + ".port";
    std::remove(port_file_.c_str());
    std::vector<std::string> argv = {std::string(RWKV_EDGE_BINARY_DIR) + "/rwkv-edge", "serve", "--host", "127.0.0.1",
                                     "--port", "0", "--port-file", port_file_, "--log-level", "warn"};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      FILE* log = std::fopen(log_file.c_str(), "w");
      if (log != nullptr) {
        dup2(fileno(log), 1);
        dup2(fileno(log), 2);
      }
      std::vector<char*> cargs;
      for (auto& a : argv) cargs.push_back(a.data());
      cargs.push_back(nullptr);
      execv(cargs[0], cargs.data());
      _exit(127);
    }
  }
  ~ServerProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Waits for the port file and for /health == 200. False on timeout or exit.
  bool wait_ready(double seconds = 30) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < until) {
      if (port_ == 0) {
        std::ifstream f(port_file_);
        int p = 0;
        if (f >> p) port_ = p;
      }
      if (port_ != 0) {
        httplib::Client c("127.0.0.1", port_);
        auto r = c.Get("/health");
        if (r && r->status == 200) return true;
      }
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        exited_ = true;
        exit_code_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    return c;
  }

  // Sends SIGTERM and returns the exit code (-1 if killed by a signal or timed out).
  int terminate(double seconds = 30) {
    if (exited_) return exit_code_;
    kill(pid_, SIGTERM);
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < until) {
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  bool exited_ = false;
  int exit_code_ = -1;
  std::string port_file_;
};

}  // namespace rwkv::test
