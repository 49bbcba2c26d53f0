"""The adapters a replica serves: read from the folder, re-read when a folder changes, dropped when it goes.

Every replica polls the same folder, so an admin upload to any replica reaches all of them (replicas keep no state
of their own). A folder that fails to load keeps the previous version serving and its error is reported.
"""
import logging
import threading

from mmf_pe.serve import layout

log = logging.getLogger("mmf_pe.serve")


class Adapters:
    def __init__(self, engine):
        self.engine = engine
        self.versions, self.stamps, self.errors = {}, {}, {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def get(self, name):
        return self.versions.get(name)

    async def get_async(self, name):
        """`get` from the event loop: a version not yet in memory is loaded in a worker thread (residency.py)."""
        version = self.versions.get(name)
        if version is not None or name not in self.names():
            return self.get(name) if version is not None else None
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(self.get, name)

    def names(self):
        return sorted(self.versions)

    def refresh(self):
        """Sync with the folder; returns the names that changed."""
        with self.lock:
            present = layout.adapter_names(self.engine.folder)
            changed = [n for n in self.versions if n not in present]
            versions = {n: v for n, v in self.versions.items() if n in present}
            for name in list(self.stamps):
                if name not in present:
                    self.stamps.pop(name)
                    self.errors.pop(name, None)
            for name in present:
                current = layout.stamp(self.engine.folder, name)
                if current is None or current == self.stamps.get(name):
                    continue
                try:
                    versions[name] = self.engine.read_folder_version(name)
                    self.errors.pop(name, None)
                    changed.append(name)
                    log.info("adapter %s: version %s loaded", name, versions[name].fingerprint)
                except Exception as error:  # noqa: BLE001 - one bad folder must not stop the others
                    self.errors[name] = str(error)
                    log.warning("adapter %s not loaded: %s", name, error)
                self.stamps[name] = current
            self.versions = versions  # one assignment: readers see the old or the new dict, never a mix
            return changed

    def watch(self, poll_s=1.0):
        def loop():
            while not self._stop.wait(poll_s):
                try:
                    self.refresh()
                except Exception as error:  # noqa: BLE001 - e.g. the folder briefly unreadable
                    log.warning("adapter folder scan failed: %s", error)

        self._thread = threading.Thread(target=loop, name="mmf-pe-adapter-watch", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
