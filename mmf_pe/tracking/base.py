"""The one tracker interface every backend implements; `MultiTracker` fans calls out to several."""


class Tracker:
    """A tracking backend. Steps are num_updates; keys are MMF's (`val/hateful_memes/roc_auc`, `train/total_loss`)."""

    def start(self, run_info, config):
        """Begin a run: `run_info` is the `run` event (params, mode, seed...), `config` a plain dict, secrets
        scrubbed."""

    def log_metrics(self, metrics, step):
        """Scalars at one step."""

    def log_curves(self, prefix, probabilities, targets, step):
        """ROC and PR curves of one evaluation (`prefix` such as `val/hateful_memes`)."""

    def log_event(self, event):
        """A structured event of the metrics.jsonl schema (see mmf_pe.tracking)."""

    def set_summary(self, values):
        """Final values of the run (best checkpoint metrics)."""

    def finish(self, status="completed"):
        """Flush and close; `status` is completed or failed."""


class MultiTracker(Tracker):
    def __init__(self, trackers):
        self.trackers = list(trackers)

    def _each(self, method, *args):
        for tracker in self.trackers:
            getattr(tracker, method)(*args)

    def start(self, run_info, config):
        self._each("start", run_info, config)

    def log_metrics(self, metrics, step):
        self._each("log_metrics", metrics, step)

    def log_curves(self, prefix, probabilities, targets, step):
        self._each("log_curves", prefix, probabilities, targets, step)

    def log_event(self, event):
        self._each("log_event", event)

    def set_summary(self, values):
        self._each("set_summary", values)

    def finish(self, status="completed"):
        errors = []
        for tracker in self.trackers:  # close every backend even if one fails
            try:
                tracker.finish(status)
            except Exception as error:  # noqa: BLE001 - re-raised below
                errors.append(error)
        if errors:
            raise errors[0]
