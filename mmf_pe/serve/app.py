"""The FastAPI app: scoring, adapter admin, health, metrics and the moderator's page (see docs/serving.md)."""
import asyncio
import contextlib
import hmac
import logging
import math
import os
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmf_pe.serve import layout
from mmf_pe.serve.adapters import Adapters
from mmf_pe.serve.batcher import Batcher, QueueFull
from mmf_pe.serve.contract_inputs import contract_input
from mmf_pe.serve.fanout import DEFAULT_MAX_FANOUT, score_many
from mmf_pe.serve.images import DEFAULT_WORKING_SIZE, Expired, ImageGate, Upload, decoded
from mmf_pe.serve.inputs import BadInput, check_filename, features_from_json, features_from_npy, parse_json
from mmf_pe.serve.metrics import Metrics
from mmf_pe.serve.public import without_paths
from mmf_pe.serve.reading import add_ocr_route, text_for
from mmf_pe.serve.residency import LazyAdapters
from mmf_pe.utils.text_normalization import normalize_text

log = logging.getLogger("mmf_pe.serve")
MAX_UPLOAD_BYTES = 10 * 2**20
# 4096 x 4096: four times the detectors' working size (short side 800, long side <= 1333) in each dimension; an
# image beyond it carries nothing the detector can use and costs ~3 bytes per pixel to decode (docs/serving.md)
MAX_PIXELS = 4096 * 4096
DECODE_CONCURRENCY = 2  # images decoded / in the detector at once (the detector itself runs one at a time)
MAX_REGIONS_SHOWN = 36


class Settings:
    def __init__(self, folder, default_adapter=None, max_batch=16, max_wait_ms=5.0, max_queue=256, timeout_s=30.0,
                 max_upload_bytes=MAX_UPLOAD_BYTES, max_pixels=MAX_PIXELS, poll_s=1.0, admin_token=None,
                 score_token=None, decode_concurrency=DECODE_CONCURRENCY, max_fanout=DEFAULT_MAX_FANOUT,
                 max_adapters_in_memory=None):
        self.folder, self.default_adapter = folder, default_adapter
        self.max_batch, self.max_wait_ms, self.max_queue, self.timeout_s = max_batch, max_wait_ms, max_queue, timeout_s
        self.max_upload_bytes, self.max_pixels, self.poll_s = max_upload_bytes, max_pixels, poll_s
        self.decode_concurrency, self.max_fanout = decode_concurrency, int(max_fanout)
        self.max_adapters_in_memory = max_adapters_in_memory  # None: every adapter resident (serve/residency.py)
        self.admin_token = os.environ.get("MMF_PE_ADMIN_TOKEN") if admin_token is None else admin_token
        self.score_token = os.environ.get("MMF_PE_SCORE_TOKEN") if score_token is None else score_token


def create_app(settings, engine=None, featurizer=None, reader="tesseract"):
    """The app over `settings.folder` (base loaded now, adapters on startup and whenever the folder changes).
    `reader`: the OCR engine for images sent without text (an `OcrEngine`, its command name, or None: text required)."""
    from mmf_pe.serve.engine import Engine

    engine = engine or Engine(settings.folder)
    metrics = Metrics()
    adapters = Adapters(engine) if settings.max_adapters_in_memory is None else \
        LazyAdapters(engine, settings.max_adapters_in_memory, metrics)
    default = settings.default_adapter or engine.config.get("default_adapter")
    batcher = Batcher(engine.score_batch, settings.max_batch, settings.max_wait_ms, settings.max_queue,
                      on_batch=metrics.observe_batch, group_of=engine.batch_group,  # mixed adapters: serve/mixed.py
                      hold=getattr(adapters, "hold", None))
    gate = ImageGate(settings.decode_concurrency)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(adapters.refresh)
        adapters.watch(settings.poll_s)
        batcher.start()
        metrics.queue_depth.set_function(lambda: batcher.depth)
        metrics.adapters_loaded.set_function(lambda: len(adapters.versions))
        metrics.images_in_flight.set_function(lambda: gate.in_flight)
        yield
        adapters.stop()
        await batcher.stop()

    app = FastAPI(title="mmf_pe serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine, app.state.adapters, app.state.batcher, app.state.metrics = engine, adapters, batcher, metrics
    app.state.featurizer, app.state.image_gate = featurizer, gate
    if isinstance(reader, str):
        from mmf_pe.ocr import OcrEngine

        reader = OcrEngine(reader)
    app.state.reader = reader
    add_ocr_route(app, reader, settings, read_form,
                  lambda request: not settings.score_token or _bearer_matches(request, settings.score_token), gate)

    def default_name():
        if default and adapters.get(default):
            return default
        names = adapters.names()
        return names[0] if len(names) == 1 else default

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return JSONResponse({"error": f"invalid request: {exc.errors()[:3]}", "status": 422}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):  # unknown routes, wrong methods: the same JSON shape as every error
        return JSONResponse({"error": str(exc.detail), "status": exc.status_code}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected_error(request, exc):  # last resort: logged, answered as JSON, the service stays up
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}", "status": 500}, status_code=500)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        ready = bool(adapters.names())
        body = {"ready": ready, "base_loaded": True, "adapters": adapters.names(),
                "errors": without_paths(adapters.errors, settings.folder)}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/adapters")
    async def list_adapters():
        body = {"default": default_name(), "adapters": [v.describe() for _, v in sorted(adapters.versions.items())],
                "errors": adapters.errors, "detector": featurizer.provenance() if featurizer else None,
                "bases": engine.describe_bases()}
        return without_paths(body, settings.folder)  # unauthenticated: file names, never the server's directories

    def check_admin(request):
        if not settings.admin_token:
            raise BadInput(403, "adapter administration is disabled: start the server with MMF_PE_ADMIN_TOKEN set")
        if not _bearer_matches(request, settings.admin_token):
            raise BadInput(401, "missing or wrong bearer token (Authorization: Bearer <MMF_PE_ADMIN_TOKEN>)")

    @app.post("/v1/adapters/{name}")
    async def put_adapter(name: str, request: Request):
        try:
            check_admin(request)
            layout_name(name)
            form = await read_form(request, settings.max_upload_bytes * 8, max_files=2)
            parts = {}
            for field in ("config", "weights"):
                part = form.get(field)
                if not isinstance(part, UploadFile):
                    raise BadInput(422, f"multipart file field {field!r} missing (adapter_config.json / "
                                        "adapter_model.safetensors)", field)
                parts[field] = await part.read()
            from mmf_pe.serve.engine import AdapterError

            try:
                version = await run_in_threadpool(engine.read_version, name, parts["config"], parts["weights"],
                                                  f"upload {name}")
            except AdapterError as error:
                raise BadInput(422, str(error), error.field or "config") from None
            replaced = name in adapters.names()  # (no lazy load just to say so)
            fingerprint = await run_in_threadpool(layout.publish, settings.folder, name, parts["config"],
                                                  parts["weights"])
            await run_in_threadpool(adapters.refresh)
            return JSONResponse({"name": name, "fingerprint": fingerprint, "replaced": replaced,
                                 "adapter": version.describe()}, status_code=201)
        except BadInput as error:
            return JSONResponse(error.body(), status_code=error.status)

    @app.delete("/v1/adapters/{name}")
    async def delete_adapter(name: str, request: Request):
        try:
            check_admin(request)
            layout_name(name)
            try:
                await run_in_threadpool(layout.unpublish, settings.folder, name)
            except FileNotFoundError:
                raise BadInput(404, f"unknown adapter {name!r}", "adapter") from None
            await run_in_threadpool(adapters.refresh)
            return {"name": name, "removed": True}
        except BadInput as error:
            return JSONResponse(error.body(), status_code=error.status)

    @app.post("/v1/score")
    async def score(request: Request):
        started = time.perf_counter()
        deadline = time.monotonic() + settings.timeout_s  # features (decode + detector) and model, together
        adapter_label = "-"
        try:
            if settings.score_token and not _bearer_matches(request, settings.score_token):
                raise BadInput(401, "missing or wrong bearer token for scoring (MMF_PE_SCORE_TOKEN)")
            fields = await read_score_fields(request, settings.max_upload_bytes)
            if fields.get("adapters") is not None:  # fan-out: one result per adapter (serve/fanout.py)
                adapter_label = "(fan-out)"
                body = await score_many(fields, adapters, batcher, features_for, deadline, settings.max_fanout,
                                        timed_out, read_text)
                for result in body["results"]:  # counted per adapter scored (an error: under "(fan-out)")
                    metrics.observe_request(200, result["adapter"]["name"], time.perf_counter() - started, None,
                                            result["timings_ms"]["model"] / 1000)
                return body
            name = fields.get("adapter") or default_name()
            if not name:
                raise BadInput(422, f"name an adapter (adapter=...); loaded: {adapters.names()}", "adapter")
            if not isinstance(name, str):
                raise BadInput(422, "adapter must be a string", "adapter")
            version = await adapters.get_async(name)  # a lazy load (serve/residency.py) off the event loop
            if version is None:
                why = f" ({without_paths(adapters.errors[name], settings.folder)})" if name in adapters.errors else ""
                raise BadInput(404, f"unknown adapter {name[:80]!r}{why}; loaded: {adapters.names()}", "adapter")
            adapter_label = name
            scored = await read_text(fields, deadline, version)
            scored_text = normalize_text(scored["text"], version.text_normalization)  # as the adapter's run trained
            features, regions, features_ms = await features_for(fields, version, deadline)
            try:
                future = batcher.submit(version, scored_text, features)
            except QueueFull as error:
                metrics.rejected.inc()
                raise BadInput(429, f"server busy: {error}; retry later") from None
            try:
                probability, timings = await asyncio.wait_for(asyncio.shield(future),
                                                              max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                future.cancel()
                raise timed_out() from None
            if not math.isfinite(probability):  # finite inputs so large the model overflows (e.g. 1e30 in float32)
                given = features.get("features") if isinstance(features, dict) else features  # contract inputs
                field = "features" if given is not None else "image"
                largest = f": max |x| = {float(given.abs().max()):.3g}" if given is not None else ""
                raise BadInput(422, f"{field}: the model's output is not finite for this input (values too "
                                    f"large{largest})", field)
            total_ms = 1000 * (time.perf_counter() - started)
            body = {"probability": probability, "label": int(probability >= version.threshold),
                    "threshold": version.threshold,
                    "adapter": {"name": version.name, "fingerprint": version.fingerprint},
                    "timings_ms": {"features": round(features_ms, 3), "queue": timings["queue_ms"],
                                   "model": timings["model_ms"], "ocr": scored["ocr_ms"],
                                   "total": round(total_ms, 3)},
                    "text": scored["text"], "text_source": scored["source"],
                    "text_normalization": {"scored": scored_text, "mode": version.text_normalization,
                                           "changed": scored_text != scored["text"]},  # shows an evasion attempt
                    "batch_size": timings["batch_size"], "features_source": "image" if fields.get("image") is not None
                    else "precomputed"}
            if scored.get("note"):
                body["note"] = scored["note"]
            if regions is not None:
                body["regions"] = dict(regions, boxes=regions["boxes"][:MAX_REGIONS_SHOWN])
            metrics.observe_request(200, adapter_label, total_ms / 1000, features_ms / 1000, timings["model_ms"] / 1000)
            return body
        except BadInput as error:
            metrics.observe_request(error.status, adapter_label, time.perf_counter() - started)
            headers = {"Retry-After": "1"} if error.status == 429 else None
            return JSONResponse(error.body(), status_code=error.status, headers=headers)

    async def read_text(fields, deadline, version):
        """Client text, else OCR of the image (inside the image gate, within the request's deadline). For a base
        without a detector OCR reads the full-size decode its image processor then reuses; with a detector, the
        copy shrunk to the default working size (800 / 1333), which the detector reuses when it works at that size
        (the default; a detector set smaller decodes its own, so OCR reads the same text whatever the detector)."""
        working_size = None if not version.base.uses_detector else DEFAULT_WORKING_SIZE
        try:
            return await text_for(fields, reader, settings.max_pixels, gate, deadline, working_size)
        except (Expired, TimeoutError):
            raise timed_out() from None

    def timed_out():
        return BadInput(504, f"not scored within {settings.timeout_s} s (request timeout; image decoding and the "
                             "detector count)")

    async def features_for(fields, version, deadline):
        image, given = fields.get("image"), fields.get("features")
        if image is not None and given is not None:
            raise BadInput(422, "send either an image or precomputed features, not both")
        if not version.base.uses_detector:  # the base's own processors read images (mmf_pe.models.contract)
            try:
                return await contract_input(version, image, given, settings.max_pixels, gate, deadline)
            except (Expired, TimeoutError):
                raise timed_out() from None
        if given is not None:
            if isinstance(given, tuple):  # (filename, bytes) of an .npy upload
                return features_from_npy(given[1], version.base.feature_dim, given[0]), None, 0.0
            return features_from_json(given, version.base.feature_dim), None, 0.0
        if image is None:
            raise BadInput(422, "no input: send an image (multipart field 'image') or features (.npy file or JSON "
                                "array in field 'features')")
        started = time.perf_counter()  # features time = waiting for a decode slot + decoding + detector
        try:
            features, regions = await gate.run(deadline, image_features, image, version, deadline)
        except (Expired, TimeoutError):  # TimeoutError: the detector's own deadline check
            raise timed_out() from None
        return features, regions, 1000 * (time.perf_counter() - started)

    def decode_size(version):
        """The detector's working size for a base with a detector; None (full size) for one reading images with its
        own processor."""
        if not version.base.uses_detector:
            return None
        return featurizer.working_size() if featurizer is not None else DEFAULT_WORKING_SIZE

    def image_features(image, version, deadline):
        """In a worker thread, holding one of the gate's slots: decode (bad files first; kept from OCR if it read the
        image first), check, run the detector."""
        rgb, original = decoded(image, settings.max_pixels, decode_size(version))
        if featurizer is None:
            raise BadInput(422, "this server runs no detector (started with --no-detector): send precomputed features")
        if version.provenance is None:
            raise BadInput(422, f"adapter {version.name!r} records no feature provenance (its training features were "
                                "not made by `mmf_pe extract`), so its detector cannot run here: send precomputed "
                                "features (.npy or JSON array)", "image")
        differences = featurizer.differences(version.provenance)
        if differences:
            text = "; ".join(f"{k}: adapter {a!r} vs server {b!r}" for k, (a, b) in differences.items())
            raise BadInput(422, f"adapter {version.name!r} was trained on features made with other detector settings "
                                f"than this server's ({text}); send precomputed features or start the server with "
                                "the adapter's settings", "image")
        features, boxes = featurizer(rgb, version.provenance.get("normalisation"), original, deadline)
        return features, {"boxes": boxes, "image_width": int(original[1]), "image_height": int(original[0])}

    @app.get("/", response_class=HTMLResponse)
    async def moderator_page():
        from mmf_pe.serve.page import PAGE

        return HTMLResponse(PAGE)

    return app


def layout_name(name):
    try:
        return layout.check_name(name)
    except ValueError as error:
        raise BadInput(422, str(error), "adapter") from None


def _bearer_matches(request, token):
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def read_body(request, limit):
    """The request body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadInput(413, f"request body of {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadInput(413, f"request body over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request, limit, max_files=2):
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException

    body = await read_body(request, limit)

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise BadInput(415, f"content type {content_type.split(';')[0] or 'none'!r}: send multipart/form-data "
                            "or application/json")
    try:
        return await Request(request.scope, replay).form(max_files=max_files, max_fields=16, max_part_size=limit)
    except MultiPartException as error:
        raise BadInput(400, f"malformed multipart body: {error.message}") from None
    except HTTPException as error:  # starlette turns some parser errors into HTTP 400 itself
        raise BadInput(error.status_code, f"malformed multipart body: {error.detail}") from None
    except (ValueError, KeyError) as error:
        raise BadInput(400, f"malformed form body: {error}") from None


async def read_score_fields(request, limit):
    """{'text', 'adapter', 'adapters', 'image': (filename, bytes), 'features': (filename, bytes) | JSON value} of a
    request."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = await read_body(request, limit)
        data = parse_json(body, "JSON body")
        if not isinstance(data, dict):
            raise BadInput(400, "the JSON body must be an object {\"text\": ..., \"features\": [[...]], ...}")
        if "image" in data:
            raise BadInput(422, "images go as multipart uploads (field 'image'), not in JSON", "image")
        return {k: data.get(k) for k in ("text", "adapter", "adapters", "features") if data.get(k) is not None}
    form = await read_form(request, limit)
    fields = {}
    for key in ("text", "adapter", "adapters"):
        value = form.get(key)
        if isinstance(value, UploadFile):
            raise BadInput(422, f"field {key!r} must be a plain form field, not a file", key)
        if value not in (None, ""):
            fields[key] = value
    for key in ("image", "features"):
        value = form.get(key)
        if isinstance(value, UploadFile):
            if value.filename == "" and not value.size:
                continue  # an empty file input of an HTML form
            name = check_filename(value.filename, key) or key
            fields[key] = Upload(name, await value.read()) if key == "image" else (name, await value.read())
        elif value not in (None, ""):
            if key == "image":
                raise BadInput(422, "field 'image' must be a file upload", "image")
            fields[key] = value
    return fields
