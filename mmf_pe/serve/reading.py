"""The text a meme is scored on: the client's when given, else read from its image by OCR (`mmf_pe.ocr`).

`reader` is an `OcrEngine`, or None when the server runs with `--ocr off` (client text required). A missing or
crashing engine answers 503 naming the engine and what to install; the service stays up.
"""
import time

from starlette.concurrency import run_in_threadpool

from mmf_pe.ocr import ENGINE, OcrError
from mmf_pe.serve.images import DEFAULT_WORKING_SIZE, Expired, decoded, upright
from mmf_pe.serve.inputs import BadInput, check_text

OCR_OFF = ("this server reads no text from images (started with --ocr off): send the meme's text in field 'text'")
EMPTY_OCR = "no text found in the image (OCR read nothing): scored on empty text"
NO_IMAGE = "no text given and no image to read it from: scored on empty text"


async def read_image_text(reader, image, max_pixels, gate=None, deadline=None, working_size=DEFAULT_WORKING_SIZE):
    """(text, ms) of an uploaded image `(filename, bytes)` or `Upload` (mmf_pe.serve.images: its decode is kept for
    the request's model input). With the app's image `gate`, decoding and OCR take one of its slots (bounded memory
    and concurrency), before `deadline` (time.monotonic()). `working_size`: the copy shrunk towards it (large images
    shrunk first, as for the detector); None: the full-size copy a frozen encoder reads."""
    if reader is None:
        raise BadInput(422, OCR_OFF, "text")
    if gate is None:
        result = await run_in_threadpool(_read, reader, image, max_pixels, working_size)
    else:
        result = await gate.run(deadline, _read, reader, image, max_pixels, working_size)
    return result.text, result.ms


def _read(reader, image, max_pixels, working_size):
    rgb = decoded(image, max_pixels, working_size)  # the server's checks, the request's one decode
    rgb = rgb[0] if working_size is not None else upright(rgb)  # the detector's copy is already upright
    try:
        return reader.read(rgb)
    except OcrError as error:
        raise BadInput(503, str(error), "text") from None


async def text_for(fields, reader, max_pixels, gate=None, deadline=None, working_size=DEFAULT_WORKING_SIZE):
    """{"text", "source": client | ocr | none, "ocr_ms", "note"?} for a scoring request's fields (`working_size`:
    as for `read_image_text`)."""
    given = fields.get("text")
    if given is not None:
        return {"text": check_text(given), "source": "client", "ocr_ms": 0.0}
    if reader is None:
        raise BadInput(422, OCR_OFF, "text")
    if fields.get("image") is None:
        return {"text": "", "source": "none", "ocr_ms": 0.0, "note": NO_IMAGE}
    text, ms = await read_image_text(reader, fields["image"], max_pixels, gate, deadline, working_size)
    answer = {"text": check_text(text), "source": "ocr", "ocr_ms": round(ms, 3)}
    if not text:
        answer["note"] = EMPTY_OCR
    return answer


def add_ocr_route(app, reader, settings, read_form, authorised, gate=None):
    """POST /v1/ocr (multipart field 'image'): the text OCR reads from it, for the page's caption box.
    `read_form`: the app's size-limited multipart reader; `authorised(request)`: the scoring token's check."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    @app.post("/v1/ocr")
    async def ocr(request: Request):
        try:
            if not authorised(request):
                raise BadInput(401, "missing or wrong bearer token for OCR (MMF_PE_SCORE_TOKEN, as for scoring)")
            form = await read_form(request, settings.max_upload_bytes, max_files=1)
            part = form.get("image")
            if part is None or isinstance(part, str) or (part.filename == "" and not part.size):
                raise BadInput(422, "send an image (multipart file field 'image')", "image")
            try:
                text, ms = await read_image_text(reader, (part.filename or "image", await part.read()),
                                                 settings.max_pixels, gate, time.monotonic() + settings.timeout_s)
            except (TimeoutError, Expired) as error:
                raise BadInput(504, f"not read within {settings.timeout_s} s ({type(error).__name__})") from None
            body = {"text": text, "source": "ocr", "engine": ENGINE, "timings_ms": {"ocr": round(ms, 3)}}
            if not text:
                body["note"] = EMPTY_OCR
            return body
        except BadInput as error:
            return JSONResponse(error.body(), status_code=error.status)

