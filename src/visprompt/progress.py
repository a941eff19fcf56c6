"""Progress bars that suit where the output goes: tqdm on a terminal; into a file or pipe,
where redraws would pile into one huge line, a plain line every `PLAIN_INTERVAL_S` seconds
(nothing for shorter work)."""

from __future__ import annotations

import sys
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


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """`tqdm(*args, **kwargs)`, or its plain-lines form when the stream is not a terminal."""
    stream = kwargs.get("file") or sys.stderr
    if not _is_terminal(stream):
        interval = max(float(kwargs.get("mininterval", 0.1)), PLAIN_INTERVAL_S)
        kwargs.update(
            file=_Lines(stream),
            mininterval=interval,
            maxinterval=max(float(kwargs.get("maxinterval", 10.0)), interval),
            delay=max(float(kwargs.get("delay", 0.0)), interval),
            ascii=True,
            dynamic_ncols=False,
            ncols=kwargs.get("ncols") or 100,
        )
    return tqdm(*args, **kwargs)
