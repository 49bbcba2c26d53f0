"""Prometheus metrics in a registry of the app's own (nothing global: several apps can live in one process)."""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mmf_pe_requests", "Scoring requests by HTTP status and adapter",
                                ["status", "adapter"], registry=r)
        self.latency = Histogram("mmf_pe_request_seconds", "End-to-end scoring latency", ["adapter"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.stage = Histogram("mmf_pe_stage_seconds", "Time per stage of a scored request", ["stage"],
                               buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("mmf_pe_batch_size", "Requests per forward pass",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.switches = Counter("mmf_pe_adapter_switches", "Batches that had to put another adapter on", registry=r)
        self.rejected = Counter("mmf_pe_rejected_queue_full", "Requests refused because the queue was full",
                                registry=r)
        self.queue_depth = Gauge("mmf_pe_queue_depth", "Requests waiting for a batch", registry=r)
        self.adapters_loaded = Gauge("mmf_pe_adapters_loaded", "Adapters being served", registry=r)
        self.images_in_flight = Gauge("mmf_pe_images_in_flight", "Images being decoded or in the detector "
                                      "(at most --decode-concurrency)", registry=r)

        self.adapter_events = Counter("mmf_pe_adapter_residency", "Adapter loads (lazy), LRU evictions and unloads "
                                      "(replaced or removed) by adapter", ["event", "adapter"], registry=r)
        self.adapter_load = Histogram("mmf_pe_adapter_load_seconds", "Time of a lazy adapter load", ["adapter"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.adapter_resident = Gauge("mmf_pe_adapter_resident", "1 while the adapter's tensors are in memory",
                                      ["adapter"], registry=r)

    def observe_residency(self, event, adapter, seconds=None):
        """`event`: loads | evictions | unloads (--max-adapters-in-memory, mmf_pe/serve/residency.py)."""
        self.adapter_events.labels(event=event, adapter=adapter).inc()
        self.adapter_resident.labels(adapter=adapter).set(1 if event == "loads" else 0)
        if seconds is not None:
            self.adapter_load.labels(adapter=adapter).observe(seconds)

    def observe_request(self, status, adapter, seconds, features_s=None, model_s=None):
        self.requests.labels(status=str(status), adapter=adapter).inc()
        if status == 200:
            self.latency.labels(adapter=adapter).observe(seconds)
            if features_s:
                self.stage.labels(stage="features").observe(features_s)
            if model_s is not None:
                self.stage.labels(stage="model").observe(model_s)

    def observe_batch(self, size, seconds, switched):
        self.batch_size.observe(size)
        if switched:
            self.switches.inc()

    def render(self):
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
