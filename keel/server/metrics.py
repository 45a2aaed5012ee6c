"""Prometheus metrics: counters and histograms updated as requests finish, and gauges
read from the loaded models' workers at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from time import perf_counter

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..cache import cache_errors
from ..events import GenerationResponse
from ..loaded import loaded_models

# Route templates get their own label; anything else (404 probes, fuzzing) is "other".
ROUTES = {
    "/v1/generate",
    "/v1/stream",
    "/v1/ws",
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/models",
    "/health",
    "/metrics",
}
_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)


class _WorkerGauges:
    """Queue and slot occupancy of every loaded model, and the cache's failures, read when
    scraped."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        waiting = GaugeMetricFamily(
            "keel_queue_waiting", "Requests waiting for a slot", labels=["model"]
        )
        running = GaugeMetricFamily(
            "keel_generations_running", "Generations in flight", labels=["model"]
        )
        for loaded in loaded_models():
            waiting.add_metric([loaded.identity.name], loaded.waiting)
            running.add_metric([loaded.identity.name], loaded.running)
        yield waiting
        yield running
        yield CounterMetricFamily(
            "keel_cache_errors",
            "Result-cache reads or writes that failed and were skipped",
            value=cache_errors(),
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "keel_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "keel_request_duration_seconds",
            "Time from request to the end of the response",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_token = Histogram(
            "keel_time_to_first_token_seconds",
            "Time from submission to the first token",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.generated = Counter(
            "keel_generated_tokens", "Tokens generated", ["model"], registry=self.registry
        )
        self.prompt = Counter(
            "keel_prompt_tokens", "Prompt tokens processed", ["model"], registry=self.registry
        )
        self.finished = Counter(
            "keel_generations", "Finished generations", ["reason"], registry=self.registry
        )
        self.cache_hits = Counter(
            "keel_cache_hits", "Generations replayed from the result cache", registry=self.registry
        )
        self.cache_misses = Counter(
            "keel_cache_misses", "Generations computed by the model", registry=self.registry
        )
        self.registry.register(_WorkerGauges())

    def generation(self, model: str, last: GenerationResponse | None, reason: str) -> None:
        """Record one finished (or cancelled) generation from its last event."""
        self.finished.labels(reason).inc()
        if last is None:
            return
        self.generated.labels(model).inc(last.generation_tokens)
        self.prompt.labels(model).inc(last.prompt_tokens)
        if last.time_to_first_token > 0:
            self.first_token.observe(last.time_to_first_token)
        (self.cache_hits if last.cached else self.cache_misses).inc()


class MetricsMiddleware:
    """Pure ASGI, so streaming responses are timed to their last byte and WebSockets count."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in ROUTES else "other"
        started = perf_counter()
        status = {"code": 101 if scope["type"] == "websocket" else 500}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "websocket.close":
                status["code"] = 1000
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(perf_counter() - started)
