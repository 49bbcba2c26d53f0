"""Request inputs for bases that read images with their own processors (no region detector), through the model
contract: the frozen CLIP / BLIP family, or any registered family (mmf_pe.models.contract). Bad input is a
`BadInput` (4xx JSON naming the field)."""
import time

from mmf_pe.models.contract import RequestError
from mmf_pe.serve.images import decoded
from mmf_pe.serve.inputs import BadInput, features_from_json, features_from_npy


async def contract_input(version, image, given, max_pixels, gate, deadline):
    """(model input for `Engine.score`, None (no regions), milliseconds spent) of one request's image / features.

    An image is decoded once, inside one of `gate`'s slots (bounded concurrency, counted in the request's deadline):
    the server's checks (pixel cap before decoding, bombs, truncation) and decode (`decode_rgb`, as MMF's dataset
    reads the file, so served scores equal offline ones; kept on an `Upload` for OCR, which may have decoded it
    first), then the base's own processor on that decoded image."""
    base = version.base
    started = time.perf_counter()
    if image is not None:
        if not base.takes_images:
            raise BadInput(422, f"adapter {version.name!r}: its base ({base.family.name}, {base.name}) takes no "
                                "images: send precomputed features", "image")
        pixels = await gate.run(deadline, _checked_pixels, base, image, max_pixels)
        return {"image": pixels}, None, 1000 * (time.perf_counter() - started)
    if given is not None:
        if not base.takes_features:
            raise BadInput(422, f"adapter {version.name!r}: its base ({base.family.name}, {base.name}) takes images, "
                                "not precomputed features: send an image (multipart field 'image')", "features")
        if isinstance(given, tuple):  # (filename, bytes) of an .npy upload
            return {"features": features_from_npy(given[1], base.feature_dim, given[0])}, None, 0.0
        return {"features": features_from_json(given, base.feature_dim)}, None, 0.0
    wanted = "an image (multipart field 'image')" if base.takes_images else "features (.npy file or JSON array)"
    raise BadInput(422, f"no input: adapter {version.name!r} needs {wanted}", "image" if base.takes_images else
                   "features")


def _checked_pixels(base, image, max_pixels):
    rgb = decoded(image, max_pixels)  # size limits, unreadable files: 4xx naming `image`; the request's one decode
    try:
        return base.process_image(rgb, image[0])
    except RequestError as error:
        raise BadInput(error.status, str(error), error.field) from None
