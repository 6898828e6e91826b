"""Progress bars and memory figures for long stage work: live bars on a terminal, a plain line every 30 s in a
log (stderr redirected, CI)."""

from __future__ import annotations

import resource
import sys

from tqdm import tqdm

LOG_INTERVAL_S = 30.0  # seconds between progress lines in a log
_label: str | None = None  # set in a worker process of `parallel.run_side_by_side`: bars print named lines


def set_label(label: str) -> None:
    """Name this process's bars (`label: desc`) and print them as plain lines, as in a log."""
    global _label
    _label = label


class _LogLines(tqdm):
    """A progress bar for logs: one plain line at most every LOG_INTERVAL_S seconds, where a terminal bar would
    redraw itself with carriage returns (unreadable in a batch job's log file). Nothing at 0%, so a loop that
    ends within the interval leaves no line at all."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "" or (msg is None and self.n == 0):  # tqdm clears a closed bar with an empty message
            return False
        print(msg or str(self), file=self.fp, flush=True)
        return True


def progress(total: int, desc: str, unit: str = "ex", initial: int = 0, disable: bool = False) -> tqdm:
    """A progress bar on stderr: live on a terminal; in a log (stderr redirected, CI) a line every 30 s.
    TQDM_DISABLE=1 silences both, as `disable` does this one (a caller that shows its own). In a process named by
    `set_label`, lines with its name. `initial`: work a killed run already did (the rate and the time left count
    only this run's)."""
    if disable:
        return tqdm(total=total, disable=True)
    if _label is not None:
        desc = f"{_label}: {desc}"
    if sys.stderr.isatty() and _label is None:
        return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True, leave=False,
                    file=sys.stderr, initial=initial)
    return _LogLines(total=total, desc=desc, unit=unit, unit_scale=True, ncols=100, ascii=True, leave=False,
                     mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, file=sys.stderr, initial=initial)


def peak_memory_mb() -> float:
    """Peak resident memory of this process and of its finished worker processes (the larger), in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)
