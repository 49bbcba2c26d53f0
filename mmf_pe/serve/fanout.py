"""Fan-out: one meme scored with several adapters (`adapters=a,b,c` or `*`), one result per adapter.

Each adapter's request goes through the same micro-batcher as a single-adapter request, so adapters of one kind
(mmf_pe/serve/mixed.py) share a forward pass as rows of one batch; the input is prepared once per base and feature
provenance (an image goes through the decoder / detector once for all adapters that read it alike). The answers are
those of the single-adapter requests.
"""
import asyncio
import json
import math
import time

from mmf_pe.serve.batcher import QueueFull
from mmf_pe.serve.inputs import BadInput, check_text
from mmf_pe.utils.text_normalization import normalize_text

DEFAULT_MAX_FANOUT = 16


def requested_names(value, loaded, limit):
    """The adapter names of an `adapters` field ('a,b,c', '*', or in JSON a list of names), at most `limit`."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if not isinstance(value, str) or not value.strip():
        raise BadInput(422, "adapters must be a comma-separated list of adapter names, or * for all", "adapters")
    names = list(loaded) if value.strip() == "*" else [n.strip() for n in value.split(",") if n.strip()]
    names = list(dict.fromkeys(names))
    if not names:
        raise BadInput(422, "adapters names no adapter (none loaded)" if value.strip() == "*" else
                       "adapters must name at least one adapter", "adapters")
    if len(names) > limit:
        raise BadInput(413, f"adapters: {len(names)} adapters, more than this server's fan-out limit {limit} "
                            "(--max-fanout)", "adapters")
    return names


async def score_many(fields, adapters, batcher, features_for, deadline, limit, timed_out,
                     read_text=None):
    """The fan-out answer body: {"results": [{adapter, probability, label, threshold}, ...], ...}.
    `read_text(fields, deadline, version)`: the text to score ({"text", "source", "ocr_ms", "note"?}: the client's,
    else OCR of the image as the first adapter's base decodes it), read once for all adapters; None: the client's
    text only."""
    names = requested_names(fields.get("adapters"), adapters.names(), limit)
    versions = [await adapters.get_async(name) for name in names]
    unknown = [n for n, v in zip(names, versions) if v is None]
    if unknown:
        raise BadInput(404, f"adapters: unknown adapter(s) {[n[:80] for n in unknown]}; loaded: {adapters.names()}",
                       "adapters")
    if read_text is None:
        scored = {"text": check_text(fields.get("text")), "source": "client", "ocr_ms": 0.0}
    else:
        scored = await read_text(fields, deadline, versions[0])
    text = scored["text"]
    prepared, features_ms = {}, 0.0
    for version in versions:  # one input per base and provenance
        key = (id(version.base), json.dumps(version.provenance, sort_keys=True, default=str))
        if key not in prepared:
            prepared[key] = await features_for(fields, version, deadline)
            features_ms += prepared[key][2]
    futures = []
    try:
        for version in versions:
            key = (id(version.base), json.dumps(version.provenance, sort_keys=True, default=str))
            # each adapter scores the text as its run trained on it (mmf_pe.utils.text_normalization)
            futures.append(batcher.submit(version, normalize_text(text, version.text_normalization),
                                          prepared[key][0]))
    except QueueFull as error:
        for future in futures:
            future.cancel()
        raise BadInput(429, f"server busy: {error}; retry later") from None
    try:
        answers = await asyncio.wait_for(asyncio.gather(*[asyncio.shield(f) for f in futures]),
                                         max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        for future in futures:
            future.cancel()
        raise timed_out() from None
    results = []
    for version, (probability, timings) in zip(versions, answers):
        if not math.isfinite(probability):
            raise BadInput(422, f"the model's output is not finite for this input with adapter {version.name!r}")
        results.append({"adapter": {"name": version.name, "fingerprint": version.fingerprint},
                        "probability": probability, "label": int(probability >= version.threshold),
                        "threshold": version.threshold, "batch_size": timings["batch_size"],
                        "timings_ms": {"queue": timings["queue_ms"], "model": timings["model_ms"]}})
    body = {"results": results, "timings_ms": {"features": round(features_ms, 3), "ocr": scored["ocr_ms"]},
            "text": text, "text_source": scored["source"],
            "features_source": "image" if fields.get("image") is not None else "precomputed"}
    if scored.get("note"):
        body["note"] = scored["note"]
    return body
