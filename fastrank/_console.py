"""Terminal helpers of the ``fastrank`` command: progress reporting and plain-text tables."""

import math
import sys


def progress(iterable, total, description, unit="epoch", enabled=True, stream=None):
    """Iterate over ``iterable`` while reporting progress on ``stream`` (stderr by default).

    Parameters
    ----------
    iterable : iterable
        What to iterate over.
    total : int
        Number of items ``iterable`` yields.
    description : str
        Label shown before the progress.
    unit : str, default "epoch"
        Name of one step.
    enabled : bool, default True
        False iterates silently.
    stream : file-like, optional
        Where to report; ``sys.stderr`` when None.

    Returns
    -------
    iterator
        A tqdm bar when tqdm is installed; else a plain bar redrawn in place when ``stream`` is a
        terminal, or one line at each quarter of the way when it is not.
    """
    if not enabled:
        return iter(iterable)
    stream = sys.stderr if stream is None else stream
    try:
        from tqdm import tqdm
    except ImportError:
        return _progress_lines(iterable, total, description, unit, stream)
    return tqdm(iterable, total=total, desc=description, unit=unit, file=stream, leave=True, dynamic_ncols=True)


def _progress_lines(iterable, total, description, unit, stream):
    """A bar redrawn in place on a terminal; elsewhere (logs, pipes) a line at each quarter."""
    interactive = hasattr(stream, "isatty") and stream.isatty()
    every = 1 if interactive else max(1, math.ceil(total / 4))
    done = 0
    for item in iterable:
        yield item
        done += 1
        if done % every and done != total:
            continue
        if interactive:
            filled = round(20 * done / max(total, 1))
            end = "\n" if done == total else ""
            print(f"\r{description}: [{'#' * filled}{'.' * (20 - filled)}] {done}/{total} {unit}s",
                  end=end, file=stream, flush=True)
        else:
            print(f"{description}: {done}/{total} {unit}s", file=stream, flush=True)


def format_table(header, rows, align=None):
    """Lay out rows of strings as aligned columns separated by two spaces.

    Parameters
    ----------
    header : sequence of str
        Column titles.
    rows : sequence of sequences of str
        One sequence per row, as long as ``header``.
    align : str, optional
        One character per column, ``"<"`` (left) or ``">"`` (right); all left when None.

    Returns
    -------
    str
        The header line and one line per row, joined by newlines (no trailing newline).
    """
    align = align or "<" * len(header)
    lines = [list(header)] + [list(row) for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join(
        "  ".join(f"{cell:{side}{width}}" for cell, side, width in zip(line, align, widths)).rstrip()
        for line in lines
    )
