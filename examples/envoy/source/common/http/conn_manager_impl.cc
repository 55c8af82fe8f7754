#include "source/common/common/hookpoints.h"

namespace Envoy {
namespace Http {

volatile uint64_t decoded_header_total = 0;
volatile uint64_t encoded_header_total = 0;

void hookpointDecodeHeaders(uint64_t stream_id, const char* path, size_t header_count) {
  HOOKPOINT_BODY();
  decoded_header_total = decoded_header_total + header_count + (path != nullptr ? 1 : 0) +
                         (stream_id & 1);
}

void hookpointEncodeHeaders(uint64_t stream_id, uint32_t status, size_t header_count) {
  HOOKPOINT_BODY();
  encoded_header_total = encoded_header_total + header_count + status + (stream_id & 1);
}

} // namespace Http
} // namespace Envoy
