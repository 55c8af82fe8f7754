// Driver for the latency tests: calls hookpointA(id) and hookpointB(id) with known gaps and prints each
// gap as it measured it (nanoseconds, one per line), so a test can compare the tracer's percentiles with
// the truth. It starts once it reads a byte on stdin (after the tracer is attached).
//   latency spread N   N streams, gaps from 20 us to 5 ms (log-spaced, shuffled deterministically)
//   latency stale      stream 1: A, 3.5 s, B (its state must be gone); stream 2: A, 0.3 s, B
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <unistd.h>

namespace Envoy {
namespace Http {
__attribute__((noinline)) void hookpointA(uint64_t id) { asm volatile("" ::: "memory"); (void)id; }
__attribute__((noinline)) void hookpointB(uint64_t id, const char* what) { asm volatile("" ::: "memory"); (void)id; (void)what; }
}  // namespace Http
}  // namespace Envoy
extern "C" __attribute__((noinline)) void hookpoint_c(void) { asm volatile("" ::: "memory"); }

static uint64_t now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

static void wait_until(uint64_t deadline) {  // spin the last stretch: a gap as exact as the clock
  while (now() + 200000 < deadline) usleep(100);
  while (now() < deadline) {}
}

static void stream(uint64_t id, uint64_t gap_ns) {
  const uint64_t start = now();
  Envoy::Http::hookpointA(id);
  wait_until(start + gap_ns);
  const uint64_t end = now();
  Envoy::Http::hookpointB(id, "b");
  hookpoint_c();
  std::printf("%llu\n", static_cast<unsigned long long>(end - start));
}

int main(int argc, char** argv) {
  char go;
  if (read(0, &go, 1) != 1) return 1;
  if (argc > 2 && std::strcmp(argv[1], "spread") == 0) {
    const long n = std::atol(argv[2]);
    for (long i = 0; i < n; ++i) {
      const long k = (i * 7919) % n;  // shuffled: the gaps do not grow with time
      const double gap_us = 20.0 * __builtin_pow(250.0, double(k) / double(n - 1));
      stream(1000 + i, uint64_t(gap_us * 1000));
    }
  } else if (argc > 1 && std::strcmp(argv[1], "stale") == 0) {
    stream(1, 3500000000ull);
    stream(2, 300000000ull);
  } else {
    return 2;
  }
  return 0;
}
