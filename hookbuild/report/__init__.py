"""trace-report: per-pod trace files merged into latency percentiles per hookpoint pair, as JSON and HTML."""
