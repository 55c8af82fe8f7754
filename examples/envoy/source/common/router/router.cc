#include "source/common/common/hookpoints.h"

namespace Envoy {
namespace Router {

volatile uint64_t routed_total = 0;

void hookpointRouterDecodeHeaders(uint64_t stream_id, const char* cluster) {
  HOOKPOINT_BODY();
  routed_total = routed_total + (cluster != nullptr ? 1 : 0) + (stream_id & 1);
}

} // namespace Router
} // namespace Envoy
