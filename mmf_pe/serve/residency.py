"""Thousands of adapters, N in memory: `--max-adapters-in-memory N` (LRU), the rest loaded lazily from the folder.

The folder scan (`refresh`) only records which adapters exist and their stamps (no weights read); `get(name)`
loads a registered adapter on first use (JSON + safetensors, the same checks as an eager load) and evicts the least
recently used resident adapter that no queued or running request holds (`hold`, called by the batcher). A request
keeps the immutable `AdapterVersion` it started with, so an eviction or a replacement never changes its answer. An
adapter whose files vanish before its lazy load is reported in `errors` (the request gets a 404 naming it); one
replaced by an upload during its load is read again (the request gets the new version).
"""
import collections
import logging
import time

from mmf_pe.serve import layout
from mmf_pe.serve.adapter_checks import AdapterChanged
from mmf_pe.serve.adapters import Adapters

log = logging.getLogger("mmf_pe.serve")
READ_ATTEMPTS = 3  # an adapter replaced during its lazy load is read again, up to this many reads in all


class LazyAdapters(Adapters):
    def __init__(self, engine, max_resident, metrics=None):
        super().__init__(engine)
        if int(max_resident) < 1:
            raise ValueError(f"--max-adapters-in-memory must be >= 1, got {max_resident}")
        self.max_resident, self.metrics = int(max_resident), metrics
        self.registered = {}  # name -> stamp of the files a lazy load will read
        self.versions = collections.OrderedDict()  # resident, least recently used first (replaced, never mutated)
        self.holds = collections.Counter()  # id(version) -> queued or running requests holding it
        self.loads = self.evictions = 0

    def names(self):
        return sorted(self.registered)

    def hold(self, version, change):
        """+1 when a request holding `version` is queued, -1 when it is done (the batcher calls it)."""
        with self.lock:
            self.holds[id(version)] += change
            if self.holds[id(version)] <= 0:
                del self.holds[id(version)]

    def get(self, name):
        with self.lock:
            version = self.versions.get(name)
            if version is not None:
                self.versions.move_to_end(name)
                return version
            if name not in self.registered:
                return None
            started = time.perf_counter()
            try:
                version = self._read(name)
            except FileNotFoundError as error:  # vanished since the last scan
                self.errors[name] = f"its files are gone from the served folder ({error.filename})"
                self.registered.pop(name, None)
                log.warning("adapter %s: %s", name, self.errors[name])
                return None
            except Exception as error:  # noqa: BLE001 - a bad adapter is reported, the others serve
                self.errors[name] = str(error)
                log.warning("adapter %s not loaded: %s", name, error)
                return None
            self.errors.pop(name, None)
            resident = collections.OrderedDict(self.versions)
            resident[name] = version
            self.loads += 1
            self._event("loads", name, time.perf_counter() - started)
            self._evict(resident, keep=name)
            self.versions = resident
            return version

    def _read(self, name, attempts=READ_ATTEMPTS):
        """The adapter's files as they are now. An upload replacing the adapter during the read (its version switch:
        new files, the old version folder removed) is read again, so a request started meanwhile gets the old or
        the new version, never an error; an adapter gone from the folder raises FileNotFoundError."""
        for attempt in range(attempts):
            try:
                return self.engine.read_folder_version(name)
            except (AdapterChanged, FileNotFoundError):
                if attempt == attempts - 1 or layout.stamp(self.engine.folder, name) is None:
                    raise

    def _evict(self, resident, keep):
        for name in list(resident):
            if len(resident) <= self.max_resident:
                break
            if name != keep and not self.holds.get(id(resident[name])):
                del resident[name]
                self.evictions += 1
                self._event("evictions", name)

    def _event(self, what, name, seconds=None):
        if self.metrics is not None:
            self.metrics.observe_residency(what, name, seconds)

    def refresh(self):
        """Sync the registry with the folder (stamps only); a replaced or removed adapter leaves memory."""
        with self.lock:
            present = layout.adapter_names(self.engine.folder)
            changed = []
            registered = {}
            for name in present:
                current = layout.stamp(self.engine.folder, name)
                if current is None:
                    continue
                registered[name] = current
                if self.registered.get(name) != current:
                    changed.append(name)
                    self.errors.pop(name, None)
            changed += [name for name in self.registered if name not in registered]
            self.errors = {n: e for n, e in self.errors.items() if n in registered}
            resident = collections.OrderedDict((n, v) for n, v in self.versions.items()
                                               if n in registered and registered[n] == self.registered.get(n))
            for name in set(self.versions) - set(resident):
                self._event("unloads", name)  # replaced or removed: the next request loads what is there now
            self.registered, self.versions = registered, resident
            return changed
