"""The progress bar of a batch run: glaciers done / failed / running, driven by ``as_completed``.

>>> bar = Progress(3, skipped=1, enabled=False)
>>> bar.running(2); bar.finished("done"); bar.finished("failed")
>>> bar.counts
{'done': 1, 'failed': 1, 'error': 0, 'killed': 0, 'running': 0, 'skipped': 1}
"""

from __future__ import annotations

import sys


class Progress:
    """A tqdm bar over all glaciers; skipped ones (done before) start it, not counted as done."""

    def __init__(self, total: int, *, skipped: int = 0, enabled: bool = True) -> None:
        self.counts = {"done": 0, "failed": 0, "error": 0, "killed": 0, "running": 0, "skipped": skipped}
        self.enabled = enabled
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=skipped, unit="glacier", file=sys.stderr,
                            desc="glaciers", dynamic_ncols=True)
            self._show()

    def _show(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: v for k, v in self.counts.items() if v or k in ("done", "running")},
                                 refresh=True)

    def dashboard(self, link: str | None) -> None:
        """Print the Dask dashboard link once, above the bar."""
        if self.bar is not None and link:
            self.bar.write(f"Dask dashboard: {link}", file=sys.stderr)

    def running(self, n: int) -> None:
        """``n`` more glacier tasks were submitted."""
        self.counts["running"] += n
        self._show()

    def finished(self, state: str) -> None:
        """A glacier's task ended with ``state`` (done, failed, error or killed)."""
        self.counts[state] += 1
        self.counts["running"] -= 1
        if self.bar is not None:
            self.bar.update(1)
        self._show()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
