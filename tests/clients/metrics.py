"""Parses a Cairn /metrics scrape with the Prometheus client library's own OpenMetrics parser
(run by the end-to-end test `metrics::*`), and prints one line per sample:
`name{label=value,...} value`, labels sorted.

Usage: python3 metrics.py < scrape.txt
"""

import sys

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError as missing:
    sys.exit(f"{missing}: the metrics tests need prometheus_client (.ci/run installs it)")

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        print(f"{sample.name}{{{labels}}} {sample.value}")
