"""The model side of the server: the bases of a served folder, one model skeleton per adapter kind, adapters swapped in.

A folder holds `base/` and optionally more bases under `bases/<name>/`, each of any registered model family
(mmf_pe.models.contract: VisualBERT, the frozen CLIP / BLIP family, ...). An adapter names its base by the
fingerprints of the frozen tensors it was trained on; the engine finds that base among the loaded ones.
Adapters of one kind (training mode + method settings) share a skeleton whose frozen parameters *are* the base
tensors (no copy); only the slots an adapter trains are the skeleton's own. A batch puts its adapter's tensors into
those slots under the skeleton's lock (`copy_` of a few MB), then runs. Every load of an adapter makes a new immutable
`AdapterVersion`; a request holds the version it started with. Everything (base, skeletons, batches) lives on one
`device`.
"""
import itertools
import os
import re
from dataclasses import dataclass, field

import torch

from mmf_pe.models.contract import Kind, RequestError, open_base, read_adapter_files
from mmf_pe.serve import layout, mixed
from mmf_pe.serve.adapter_checks import AdapterChanged, AdapterError, check_for_base, check_weights, checked_config
from mmf_pe.serve.base_export import BASES_DIR  # more bases beside base/: <folder>/bases/<name>/
from mmf_pe.tuners import method_settings
from mmf_pe.tuners.export import CONFIG_NAME, WEIGHTS_NAME
from mmf_pe.utils.hashing import file_sha256
from mmf_pe.utils.text_normalization import check_mode

_versions = itertools.count(1)

def check_device(device):
    """`cpu`, `cuda` or `cuda:N` as a torch.device, refused with the reason when this machine cannot run it."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device!r}: use cpu, cuda or cuda:N") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r}: use cpu, cuda or cuda:N")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA GPU is visible here (torch.cuda.is_available() is False)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return parsed


@dataclass(eq=False)
class AdapterVersion:
    name: str
    fingerprint: str
    config: dict
    tensors: dict
    kind: Kind
    serial: int = field(default_factory=lambda: next(_versions))

    @property
    def threshold(self):
        value = self.config.get("threshold")
        return 0.5 if value is None else float(value)

    @property
    def text_normalization(self):
        """What the export says its run did to captions (`none` for exports made before the key existed)."""
        return self.config.get("text_normalization") or "none"

    @property
    def provenance(self):
        return self.config.get("feature_provenance")

    @property
    def base(self):
        return self.kind.base

    @property
    def accepts_images(self):
        """Images through the base's own processors, or through the detector when the adapter records how its
        training features were made."""
        if self.base.uses_detector:
            return self.provenance is not None
        return self.base.takes_images

    def describe(self):
        return {"name": self.name, "fingerprint": self.fingerprint, "training_mode": self.config.get("training_mode"),
                "method": method_settings(self.config.get("pe"), None)[0], "threshold": self.threshold,
                "num_parameters": self.config.get("num_parameters"), "model": self.base.family.name,
                "base": self.base.describe(), "feature_provenance": self.provenance,
                "accepts_images": self.accepts_images, "accepts_features": self.base.takes_features}


class Engine:
    """The folder's bases loaded once (`base/` required, `bases/*` optional); adapters read from `<folder>/<name>/`.

    A base under `bases/` that fails to load is reported (`base_errors`) and its adapters refused with the reason;
    the others serve."""

    def __init__(self, folder, precision="fp32", device="cpu", embedding_cache_mb=256.0):
        from mmf_pe.utils.precision import resolve_precision

        self.folder = folder
        self.device = check_device(device)
        # auto is bf16 only where the device computes it natively; fp16 is refused on CPU
        self.precision_decision = resolve_precision(precision, self.device.type)
        self.precision = self.precision_decision.name
        self.config = layout.read_base_config(folder)
        cache_bytes = int(float(embedding_cache_mb) * 2**20)
        self.bases, self.base_errors = {}, {}
        self.primary = open_base(os.path.join(folder, layout.BASE_DIR), self.device, cache_bytes)
        self.bases[layout.BASE_DIR] = self.primary
        extra = os.path.join(folder, BASES_DIR)
        for name in sorted(os.listdir(extra)) if os.path.isdir(extra) else []:
            path = os.path.join(extra, name)
            if name.startswith(".") or not os.path.isdir(path):
                continue
            try:
                self.bases[f"{BASES_DIR}/{name}"] = open_base(path, self.device, cache_bytes)
            except Exception as error:  # noqa: BLE001 - one bad base must not stop the others; its adapters say why
                self.base_errors[f"{BASES_DIR}/{name}"] = str(error)

    # the primary base, as the single-base server exposed it (the demo's checks read these)
    @property
    def base_tensors(self):
        return self.primary.frozen

    @property
    def max_seq_length(self):
        return getattr(self.primary, "max_seq_length", None)

    @property
    def feature_dim(self):
        return self.primary.feature_dim

    @property
    def kinds(self):
        """Every model skeleton built so far, over all bases: {(base name, kind key): Kind}."""
        return {(name, key): kind for name, base in self.bases.items() for key, kind in base.kinds.items()}

    def describe_bases(self):
        return {"loaded": {name: base.describe() for name, base in self.bases.items()}, "errors": self.base_errors}

    # ---- adapters ----------------------------------------------------------------------------------------------

    def read_version(self, name, config_bytes, weights_bytes, where, weights_path=None):
        """Parse and check an adapter (no unpickling: JSON + safetensors); returns an AdapterVersion.

        `weights_path` (instead of `weights_bytes`): the weights are memory-mapped from that file (safetensors'
        `load_file`; fp32 tensors on the CPU stay views of the mapping, so an adapter costs page cache the kernel
        can drop, not process memory), and fingerprinted from the file in chunks."""
        from safetensors.torch import load as load_safetensors
        from safetensors.torch import load_file

        config = checked_config(config_bytes, where)  # data only: types bounded, never interpolated
        try:
            check_mode(config.get("text_normalization"), f"{where}/{CONFIG_NAME}: text_normalization")
        except ValueError as error:
            raise AdapterError(str(error)) from None
        try:
            tensors = load_safetensors(weights_bytes) if weights_path is None else load_file(weights_path)
        except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise AdapterError(f"{where}/{WEIGHTS_NAME}: not a readable safetensors file ({error})") from None
        check_weights(tensors, where)
        tensors = {k: (v.float() if v.is_floating_point() else v).to(self.device) for k, v in tensors.items()}
        base = self.base_for(config, where)
        check_for_base(config, where, base.config.get("model_config"))  # sizes bounded by this base
        try:
            kind = base.kind_for(config, tensors, where)
        except AdapterError:
            raise
        except (ValueError, TypeError, KeyError, re.error) as error:  # what a method refuses while building
            raise AdapterError(f"{where}: the model cannot be built with this adapter's settings: "
                               f"{str(error)[:300]}") from None
        expected = (config.get("base_fingerprint") or {}).get("digest")
        if expected != kind.digest:
            raise AdapterError(f"{where}: trained on other base weights (fingerprint {str(expected)[:12]}.., this "
                               f"server's base {base.name} {kind.digest[:12]}..)")
        kind = mixed.prepare(base.keep_kind(kind), config)  # kept only once an adapter of its kind is accepted
        if weights_path is None:
            identity = layout.fingerprint(config_bytes, weights_bytes)
        else:
            identity = layout.fingerprint(config_bytes, None, bytes.fromhex(file_sha256(weights_path)))
        return AdapterVersion(name, identity, config, tensors, kind)

    def base_for(self, config, where):
        """The loaded base whose tensors are those the adapter was trained on (matched tensor by tensor)."""
        model = config.get("model") or "visual_bert_pe"
        for base in self.bases.values():
            if base.holds(config):
                return base
        same = [b for b in self.bases.values() if model in b.family.names]
        if len(same) == 1 and not self.base_errors:
            return same[0]  # the one base of its family: the fingerprint check says what differs
        digest = str((config.get("base_fingerprint") or {}).get("digest"))[:12]
        loaded = ", ".join(f"{n} ({b.family.name} {b.fingerprint})" for n, b in self.bases.items())
        failed = "; ".join(f"{n}: {e}" for n, e in self.base_errors.items())
        raise AdapterError(f"{where}: its base is not loaded here: a {model} base with the frozen weights it was "
                           f"trained on (fingerprint {digest}..; it was trained on other base weights than those "
                           f"loaded); loaded bases: {loaded}" + (f"; bases that failed to load: {failed}" if failed
                                                                  else ""))

    def read_folder_version(self, name):
        """The adapter `<folder>/<name>` (its version folder resolved once), weights memory-mapped; an adapter whose
        files change while it loads is refused (the next scan or request reads the new files)."""
        path = os.path.join(self.folder, name)
        real = os.path.realpath(path)
        before = layout.stamp(self.folder, name)
        config_bytes = read_adapter_files(real, weights=False)[0]
        version = self.read_version(name, config_bytes, None, path, weights_path=os.path.join(real, WEIGHTS_NAME))
        if layout.stamp(self.folder, name) != before:
            raise AdapterChanged(f"{path}: its files changed while it was loading; read again")
        return version

    # ---- scoring -------------------------------------------------------------------------------------------------

    def prepare(self, version, text, image=None, features=None):
        """One request's model input through its base's own processors (RequestError on input the base refuses)."""
        return version.base.prepare(text, image=image, features=features)

    def sample_list(self, texts, features, version=None):
        """The model's input batch for texts [str] and region features [(N_i, D) tensors] on `version`'s base (the
        primary base when None); also what `mmf_pe adapt` trains on, so training and serving see the same inputs."""
        base = version.base if version is not None else self.primary
        return base.collate(texts, [base.prepare(t, features=f) for t, f in zip(texts, features)])

    @staticmethod
    def _collate(base, texts, inputs):
        items = []
        for text, given in zip(texts, inputs):
            if isinstance(given, torch.Tensor):
                given = {"features": given}
            items.append(base.prepare(text, **given) if isinstance(given, dict) else given)
        return base.collate(texts, items)

    @staticmethod
    def batch_group(version):
        """What a request may share a forward pass with (mmf_pe.serve.mixed.group_of)."""
        return mixed.group_of(version)

    def score_batch(self, versions, texts, inputs):
        """Hate probabilities for a batch whose rows may carry different adapters of one base (one per row; of
        several methods when each has a batched implementation), with no adapter switch and no shared module
        written; a kind without a batched implementation takes one-adapter batches (`score`)."""
        from mmf_pe.utils.precision import autocast

        kind = versions[0].kind
        if any(v.kind.base is not kind.base for v in versions):
            raise ValueError("a mixed batch holds adapters of one base only")
        if kind.mixed is None or any(v.kind.mixed is None for v in versions):
            if any(v is not versions[0] for v in versions):
                refusal = next(v.kind.mixed_refusal for v in versions if v.kind.mixed is None)
                raise ValueError(f"{refusal or 'this kind has no batched model'}")
            return self.score(versions[0], texts, inputs)
        kinds, order = mixed.part_order(versions)
        rows = [versions[r] for r in order]
        texts, inputs = [texts[r] for r in order], [inputs[r] for r in order]
        expand = None
        if mixed.model_for(kinds)[1] is not None:  # fan-out: the stages below the lowest adapter run per meme
            firsts, expand = mixed.distinct_inputs(texts, inputs)
            if len(firsts) < len(rows):
                texts, inputs = [texts[r] for r in firsts], [inputs[r] for r in firsts]
            else:
                expand = None
        batch = self._collate(kind.base, texts, inputs)
        with torch.inference_mode(), autocast(self.precision, self.device.type):
            probabilities = mixed.run(kinds, rows, batch, kind.base.probabilities, expand)
        ordered = probabilities.float().cpu().tolist()
        out = [0.0] * len(order)
        for position, row in enumerate(order):
            out[row] = ordered[position]
        return out, False

    def score(self, version, texts, inputs):
        """Hate probabilities for a batch of one adapter: texts [str]; inputs: `prepare`d items, {"image": ..} /
        {"features": ..} dicts, or (N_i, D) float32 region-feature tensors."""
        from mmf_pe.utils.precision import autocast

        base = version.base
        batch = self._collate(base, texts, inputs)
        kind = version.kind
        with kind.lock, torch.inference_mode():
            switched = kind.put_on(version)
            with autocast(self.precision, self.device.type):  # weights stay fp32; matmuls in bf16 with bf16
                probabilities = base.probabilities(kind.model, batch)
        return probabilities.float().cpu().tolist(), switched


__all__ = ["AdapterError", "AdapterVersion", "Engine", "Kind", "RequestError"]
