// hookbuild sample Envoy: a tiny stand-in for envoy-static. It accepts (and
// ignores) any Envoy command line, and drives every hook point in a loop:
//   envoy [--iterations N] [--interval-ms M] [--version] [any Envoy flags...]
// --iterations 0 (the default) runs until SIGTERM/SIGINT, like a server.

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

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

void sleepMs(long ms) {
  if (ms <= 0) {
    return;
  }
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && !stop_requested) {
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

} // namespace

int main(int argc, char** argv) {
  long iterations = 0;
  long interval_ms = 100;
  long print_every = 10;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("%s  version: hookbuild-sample/%s/Clean/RELEASE/BoringSSL\n", argv[0],
                  ENVOY_VERSION);
      return 0;
    }
    if (takeValue(argc, argv, i, "--iterations", iterations) ||
        takeValue(argc, argv, i, "--interval-ms", interval_ms) ||
        takeValue(argc, argv, i, "--print-every", print_every)) {
      continue;
    }
    // Anything else (-c, --drain-time-s, --service-cluster, ...) is accepted and ignored.
  }
  if (print_every <= 0) {
    print_every = 1;
  }

  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("[%s %s] starting: iterations=%ld interval_ms=%ld\n", ENVOY_BUILD_FLAVOR,
              ENVOY_VERSION, iterations, interval_ms);

  long n = 0;
  while (!stop_requested && (iterations == 0 || n < iterations)) {
    const uint64_t id = static_cast<uint64_t>(n);
    Envoy::Network::hookpointOnData(id, 512, false);
    Envoy::Http::hookpointDecodeHeaders(id, "/productpage", 12);
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
