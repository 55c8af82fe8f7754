// Stand-in for Envoy in trace_all.sh tests: calls its hookpoints in a loop, which ones chosen by argv[1]
// ("decode", "encode" or "both"), so each container's trace shows whose Envoy it really traced.
#include <cstring>
#include <unistd.h>

namespace Envoy {
namespace Http {
// asm volatile keeps g++ -O2 from deleting the calls to these empty functions.
__attribute__((noinline)) void hookpointDecodeHeaders(int stream) { asm volatile("" ::: "memory"); (void)stream; }
__attribute__((noinline)) void hookpointEncodeData(int stream) { asm volatile("" ::: "memory"); (void)stream; }
}  // namespace Http
}  // namespace Envoy

int main(int argc, char** argv) {
  const char* which = argc > 1 ? argv[1] : "both";
  const bool decode = std::strcmp(which, "encode") != 0;
  const bool encode = std::strcmp(which, "decode") != 0;
  for (int i = 0;; ++i) {
    if (decode) Envoy::Http::hookpointDecodeHeaders(i);
    if (encode) Envoy::Http::hookpointEncodeData(i);
    usleep(5000);
  }
}
