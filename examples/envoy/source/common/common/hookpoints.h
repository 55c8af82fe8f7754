#pragma once

// Hook points of the hookbuild sample Envoy. Each one is an out-of-line,
// never-inlined function with a stable (mangled) symbol, so that a uprobe can
// attach to it in an optimised binary, e.g.
//   nm envoy | grep hookpoint
//   bpftrace -e 'uprobe:./envoy:_ZN5Envoy4Http22hookpointDecodeHeadersEmPKcm { @[probe] = count(); }'
// Changing a signature changes the mangled symbol.

#include <cstddef>
#include <cstdint>

// Keeps a hook point alive at -O2: no inlining, no cloning, and the empty asm
// with a memory clobber stops the optimiser from deleting the call.
#define HOOKPOINT_ATTRS __attribute__((noinline, noclone, used))
#define HOOKPOINT_BODY() asm volatile("" ::: "memory")

namespace Envoy {
namespace Http {
HOOKPOINT_ATTRS void hookpointDecodeHeaders(uint64_t stream_id, const char* path,
                                            size_t header_count);
HOOKPOINT_ATTRS void hookpointEncodeHeaders(uint64_t stream_id, uint32_t status,
                                            size_t header_count);
} // namespace Http

namespace Router {
HOOKPOINT_ATTRS void hookpointRouterDecodeHeaders(uint64_t stream_id, const char* cluster);
} // namespace Router

namespace Network {
HOOKPOINT_ATTRS void hookpointOnData(uint64_t connection_id, size_t bytes, bool end_stream);
} // namespace Network
} // namespace Envoy
