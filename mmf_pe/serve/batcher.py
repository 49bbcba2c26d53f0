"""Dynamic micro-batching on the event loop: requests of one group wait up to `max_wait_ms` to share a forward pass
of at most `max_batch`; the queue is bounded (a full queue refuses at once); the model runs in one worker thread so
the loop keeps answering. A group is one adapter version, or with `group_of` whatever it returns (the server: one
skeleton whose rows may carry different adapters, mmf_pe/serve/mixed.py); then `run_batch` gets each row's version."""
import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor


class QueueFull(Exception):
    pass


class Item:
    __slots__ = ("version", "text", "features", "future", "enqueued")

    def __init__(self, version, text, features, future):
        self.version, self.text, self.features, self.future = version, text, features, future
        self.enqueued = time.perf_counter()


class Batcher:
    def __init__(self, run_batch, max_batch=16, max_wait_ms=5.0, max_queue=256, on_batch=None, group_of=None,
                 hold=None):
        self.hold = hold  # hold(version, +1 / -1) while a request for it is queued or running (residency.py)
        self.group_of = group_of  # version -> batch group; None: one version per batch, run_batch(version, ..)
        self.run_batch, self.max_batch, self.max_wait = run_batch, max(1, int(max_batch)), max_wait_ms / 1000.0
        self.max_queue, self.on_batch = int(max_queue), on_batch
        self.waiting = collections.deque()
        self.wakeup = None
        self.task = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmf-pe-model")

    @property
    def depth(self):
        return len(self.waiting)

    def start(self):
        self.wakeup = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self):
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    def submit(self, version, text, features):
        """A future for (probability, timings) of one request; QueueFull when `max_queue` requests already wait."""
        if len(self.waiting) >= self.max_queue:
            raise QueueFull(f"{len(self.waiting)} requests already queued (limit {self.max_queue})")
        future = asyncio.get_running_loop().create_future()
        if self.hold is not None:
            self.hold(version, 1)
            future.add_done_callback(lambda _: self.hold(version, -1))
        self.waiting.append(Item(version, text, features, future))
        self.wakeup.set()
        return future

    def _group(self, version):
        return version if self.group_of is None else self.group_of(version)

    def _take(self, group, batch):
        """Move waiting items of `group` into `batch` (oldest first), dropping those whose caller gave up."""
        kept = collections.deque()
        while self.waiting:
            item = self.waiting.popleft()
            if item.future.done():
                continue
            if self._group(item.version) is group and len(batch) < self.max_batch:
                batch.append(item)
            else:
                kept.append(item)
        self.waiting = kept

    async def _loop(self):
        loop = asyncio.get_running_loop()
        while True:
            while not any(not item.future.done() for item in self.waiting):
                self.waiting.clear()
                self.wakeup.clear()
                await self.wakeup.wait()
            first = next(item for item in self.waiting if not item.future.done())
            deadline = first.enqueued + self.max_wait
            batch, group = [], self._group(first.version)
            self._take(group, batch)
            while len(batch) < self.max_batch and (remaining := deadline - time.perf_counter()) > 0:
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
                self._take(group, batch)
            started = time.perf_counter()
            try:
                versions = first.version if self.group_of is None else [i.version for i in batch]
                probabilities, switched = await loop.run_in_executor(
                    self.executor, self.run_batch, versions, [i.text for i in batch], [i.features for i in batch])
                error = None
            except Exception as exc:  # noqa: BLE001 - reported to each waiting request, the loop goes on
                error = exc
            model_s = time.perf_counter() - started
            if self.on_batch:
                self.on_batch(len(batch), model_s, switched if error is None else False)
            for position, item in enumerate(batch):
                if item.future.done():
                    continue
                if error is not None:
                    item.future.set_exception(error)
                else:
                    item.future.set_result((probabilities[position], {
                        "queue_ms": round(1000 * (started - item.enqueued), 3), "model_ms": round(1000 * model_s, 3),
                        "batch_size": len(batch), "adapter_switched": switched}))
