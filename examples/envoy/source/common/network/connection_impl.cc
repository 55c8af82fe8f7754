#include "source/common/common/hookpoints.h"

namespace Envoy {
namespace Network {

volatile uint64_t bytes_total = 0;

void hookpointOnData(uint64_t connection_id, size_t bytes, bool end_stream) {
  HOOKPOINT_BODY();
  bytes_total = bytes_total + bytes + (end_stream ? 1 : 0) + (connection_id & 1);
}

} // namespace Network
} // namespace Envoy
