// hookbuild sample Envoy: a tiny stand-in for envoy-static. It accepts (and
// ignores) any Envoy command line, and drives every hook point in a loop:
//   envoy [--iterations N] [--interval-ms M] [--version] [any Envoy flags...]
// --iterations 0 (the default) runs until SIGTERM/SIGINT, like a server.
//
// istio-perf (the record's "insert fifo write to open perf"):
//   --perf-fifo PATH    write "start parse\n" before and "stop\n" after each
//                       iteration's HTTP parsing (Dispatch() -> onHeadersComplete(),
//                       i.e. hookpointOnData .. hookpointDecodeHeaders) into the FIFO
//                       that hookbuild-perf-fifo reads. Never blocks: without a reader
//                       (or with a full pipe) the message is skipped.
//   --parse-work-us N   spend N microseconds of CPU in that parsing section (default 0),
//                       so a profile of it has samples to show.
//
// Tracing (what `invoke trace-report` should then measure):
//   --router-delay-us N wait N microseconds between hookpointDecodeHeaders and
//                       hookpointRouterDecodeHeaders of every stream (default 0): a
//                       known latency between two hookpoints of the same stream id.
//   --wait-for PATH     start the first iteration only once PATH exists, so a tracer
//                       can attach first and see every iteration.

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "source/common/common/hookpoints.h"

#ifndef ENVOY_VERSION
#define ENVOY_VERSION "0.0.0"
#endif
#ifndef ENVOY_BUILD_FLAVOR
#define ENVOY_BUILD_FLAVOR "envoy"
#endif

namespace {

volatile std::sig_atomic_t stop_requested = 0;

void onSignal(int) { stop_requested = 1; }

void sleepUs(long us) {
  if (us <= 0) {
    return;
  }
  timespec ts{us / 1000000L, (us % 1000000L) * 1000L};
  while (nanosleep(&ts, &ts) != 0 && !stop_requested) {
  }
}

void sleepMs(long ms) { sleepUs(ms * 1000L); }

void waitFor(const char* path) {
  struct stat st {};
  while (path != nullptr && stat(path, &st) != 0 && !stop_requested) {
    sleepMs(10);
  }
}

bool takeValue(int argc, char** argv, int& i, const char* name, long& out) {
  const size_t len = std::strlen(name);
  if (std::strcmp(argv[i], name) == 0 && i + 1 < argc) {
    out = std::strtol(argv[++i], nullptr, 10);
    return true;
  }
  if (std::strncmp(argv[i], name, len) == 0 && argv[i][len] == '=') {
    out = std::strtol(argv[i] + len + 1, nullptr, 10);
    return true;
  }
  return false;
}

bool takeString(int argc, char** argv, int& i, const char* name, const char*& out) {
  const size_t len = std::strlen(name);
  if (std::strcmp(argv[i], name) == 0 && i + 1 < argc) {
    out = argv[++i];
    return true;
  }
  if (std::strncmp(argv[i], name, len) == 0 && argv[i][len] == '=') {
    out = argv[i] + len + 1;
    return true;
  }
  return false;
}

// The writing end of hookbuild-perf-fifo's FIFO. Opened lazily with O_NONBLOCK (ENXIO while nobody
// reads: skipped) and kept open, so the reader sees EOF only when Envoy exits; dropped on EPIPE (the
// reader left) and reopened later. A full pipe (EAGAIN) drops the message: Envoy never waits for perf.
class PerfFifo {
public:
  explicit PerfFifo(const char* path) : path_(path) {}
  PerfFifo(const PerfFifo&) = delete;
  PerfFifo& operator=(const PerfFifo&) = delete;
  ~PerfFifo() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }

  void send(const char* message) {
    if (path_ == nullptr || (fd_ < 0 && !open_fifo())) {
      return;
    }
    // Shorter than PIPE_BUF: written whole or not at all.
    const ssize_t n = write(fd_, message, std::strlen(message));
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      close(fd_);
      fd_ = -1;
    }
  }

private:
  bool open_fifo() {
    fd_ = open(path_, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd_ < 0) {
      return false;
    }
    struct stat st {};
    if (fstat(fd_, &st) != 0 || !S_ISFIFO(st.st_mode)) { // never append to a regular file
      close(fd_);
      fd_ = -1;
      return false;
    }
    return true;
  }

  const char* path_;
  int fd_ = -1;
};

// Stand-in for the codec's header parsing work (http_parser/balsa in real Envoy).
__attribute__((noinline)) void parseHeadersWork(long us) {
  if (us <= 0) {
    return;
  }
  timespec start{};
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const long elapsed_us =
        (now.tv_sec - start.tv_sec) * 1000000L + (now.tv_nsec - start.tv_nsec) / 1000L;
    if (elapsed_us >= us || stop_requested) {
      return;
    }
  }
}

} // namespace

int main(int argc, char** argv) {
  long iterations = 0;
  long interval_ms = 100;
  long print_every = 10;
  long parse_work_us = 0;
  long router_delay_us = 0;
  const char* perf_fifo_path = nullptr;
  const char* wait_for_path = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("%s  version: hookbuild-sample/%s/Clean/RELEASE/BoringSSL\n", argv[0],
                  ENVOY_VERSION);
      return 0;
    }
    if (takeValue(argc, argv, i, "--iterations", iterations) ||
        takeValue(argc, argv, i, "--interval-ms", interval_ms) ||
        takeValue(argc, argv, i, "--print-every", print_every) ||
        takeValue(argc, argv, i, "--parse-work-us", parse_work_us) ||
        takeValue(argc, argv, i, "--router-delay-us", router_delay_us) ||
        takeString(argc, argv, i, "--perf-fifo", perf_fifo_path) ||
        takeString(argc, argv, i, "--wait-for", wait_for_path)) {
      continue;
    }
    // Anything else (-c, --drain-time-s, --service-cluster, ...) is accepted and ignored.
  }
  if (print_every <= 0) {
    print_every = 1;
  }

  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);
  if (perf_fifo_path != nullptr) {
    std::signal(SIGPIPE, SIG_IGN); // a reader that leaves must not kill Envoy (real Envoy ignores it too)
  }
  PerfFifo perf_fifo(perf_fifo_path);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("[%s %s] starting: iterations=%ld interval_ms=%ld router_delay_us=%ld\n",
              ENVOY_BUILD_FLAVOR, ENVOY_VERSION, iterations, interval_ms, router_delay_us);
  waitFor(wait_for_path);

  long n = 0;
  while (!stop_requested && (iterations == 0 || n < iterations)) {
    const uint64_t id = static_cast<uint64_t>(n);
    perf_fifo.send("start parse\n");
    Envoy::Network::hookpointOnData(id, 512, false);
    parseHeadersWork(parse_work_us);
    Envoy::Http::hookpointDecodeHeaders(id, "/productpage", 12);
    perf_fifo.send("stop\n");
    sleepUs(router_delay_us);
    Envoy::Router::hookpointRouterDecodeHeaders(id, "outbound|9080||reviews");
    Envoy::Http::hookpointEncodeHeaders(id, 200, 8);
    ++n;
    if (n % print_every == 0) {
      std::printf("[%s] iteration %ld: all hookpoints called\n", ENVOY_BUILD_FLAVOR, n);
    }
    if (iterations == 0 || n < iterations) {
      sleepMs(interval_ms);
    }
  }
  std::printf("[%s] exiting after %ld iterations\n", ENVOY_BUILD_FLAVOR, n);
  return 0;
}
