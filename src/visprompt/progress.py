"""Progress bars that suit where the output goes: tqdm on a terminal; into a file or pipe,
where redraws would pile into one huge line, a plain line every `PLAIN_INTERVAL_S` seconds
(nothing for shorter work).

Bars name the work they belong to: while a `Job` is open (the console hook opens one per
`kedro run` over its training nodes), every bar's description starts with the job's position
and the current node's label (`[23/54] vp.seed_1 epoch 3/6`) and ends with the whole job's
ETA (`job ETA 4 min`), estimated from the training time of the nodes done so far and the
fraction of the current one that its epochs report (`Job.advance`).
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from tqdm.auto import tqdm

#: Seconds between two plain progress lines (and before the first one).
PLAIN_INTERVAL_S = 30.0


class _Lines:
    """A stream for tqdm that turns each redraw into one line (no `\\r`, no padding)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Job:
    """A sequence of `total` units of work (a `kedro run`'s training nodes) that bars name.

    `begin(label)` starts the next unit, `advance(fraction)` tells how much of it is done,
    `end()` closes it; a unit closed as `reused` (a finished result read back) leaves the
    count and the time estimate, since it costs nothing.
    """

    def __init__(self, total: int) -> None:
        self.total, self.position, self.done = total, 0, 0
        self.label = ""
        self.other = ""  # the node running outside the job's units (an evaluation ...)
        self.fraction = 0.0
        self.reused = False
        self.spent_s = 0.0  # time in finished units (reused ones left out)
        self._unit_start: float | None = None

    def begin(self, label: str) -> None:
        self.position += 1
        self.label, self.fraction, self.reused = label, 0.0, False
        self._unit_start = time.perf_counter()

    def advance(self, fraction: float) -> None:
        self.fraction = min(1.0, max(0.0, fraction))

    def mark_reused(self) -> None:
        self.reused = True

    def end(self) -> bool:
        """Close the current unit; True when it was reused."""
        reused, self.reused = self.reused, False
        if self._unit_start is not None and not reused:
            self.spent_s += time.perf_counter() - self._unit_start
            self.done += 1
        elif reused:
            self.total -= 1
            self.position -= 1
        self._unit_start, self.fraction, self.label = None, 0.0, ""
        return reused

    def eta_s(self) -> float | None:
        """Seconds left for the whole job at the pace so far; None before any measure."""
        running = 0.0 if self._unit_start is None else time.perf_counter() - self._unit_start
        progress = self.done + (self.fraction if self._unit_start is not None else 0.0)
        if progress <= 0.0:
            return None
        return (self.spent_s + running) / progress * max(0.0, self.total - progress)

    @property
    def running(self) -> bool:
        return self._unit_start is not None

    def prefix(self) -> str:
        """`[23/54] vp.seed_1` while a unit runs, else the other node's name or ''."""
        return f"[{self.position}/{self.total}] {self.label}" if self.running else self.other

    def eta_text(self) -> str:
        """`job ETA 4 min` / `job ETA 40 s` / `job ETA ?` (nothing measured yet)."""
        eta = self.eta_s()
        if eta is None:
            return "job ETA ?"
        return f"job ETA {eta:.0f} s" if eta < 90 else f"job ETA {eta / 60:.0f} min"


#: The job open in this process (None outside a `kedro run`); see `start_job`.
_job: Job | None = None


def start_job(total: int) -> Job:
    """Open the job that bars name (replacing any earlier one)."""
    global _job
    _job = Job(total)
    return _job


def end_job() -> None:
    global _job
    _job = None


def current_job() -> Job | None:
    return _job


def mark_reused() -> None:
    """The current unit read a finished result back instead of computing it (no-op outside
    a job): the console says "reused" and the ETA leaves it out."""
    if _job is not None:
        _job.mark_reused()


def advance(fraction: float) -> None:
    """The fraction of the current unit done (no-op outside a job)."""
    if _job is not None:
        _job.advance(fraction)


class _JobBar(tqdm):
    """A tqdm whose postfix ends with the open job's ETA, recomputed at every redraw."""

    @property
    def format_dict(self) -> dict[str, Any]:
        values = super().format_dict
        if _job is not None and _job.running:
            postfix = values.get("postfix")
            values["postfix"] = f"{postfix}, {_job.eta_text()}" if postfix else _job.eta_text()
        return values


def describe(desc: str | None) -> str | None:
    """`desc` preceded by the open job's position and label (`[23/54] vp.seed_1 desc`)."""
    prefix = _job.prefix() if _job is not None else ""
    if not prefix:
        return desc
    return f"{prefix} {desc}" if desc else prefix


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """`tqdm(*args, **kwargs)`, or its plain-lines form when the stream is not a terminal;
    named after the open job (`describe`), with its ETA."""
    kwargs["desc"] = describe(kwargs.get("desc"))
    stream = kwargs.get("file") or sys.stderr
    if not _is_terminal(stream):
        interval = max(float(kwargs.get("mininterval", 0.0)), PLAIN_INTERVAL_S)
        kwargs.update(
            file=_Lines(stream),
            mininterval=interval,
            maxinterval=max(float(kwargs.get("maxinterval", 10.0)), interval),
            delay=max(float(kwargs.get("delay", 0.0)), interval),
            ascii=True,
            dynamic_ncols=False,
            ncols=kwargs.get("ncols") or 100,
        )
    return _JobBar(*args, **kwargs)
