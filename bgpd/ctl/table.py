"""Tables drawn as ``calicoctl`` draws them, so that an operator's eye (and scripts
that scrape the output) see the same thing.

calicoctl renders with the Go ``tablewriter`` package at its defaults: a border of
``+``, ``-`` and ``|``; a rule under the header and at the bottom, none between
rows; one space of padding each side of a cell; headers upper-cased and centred
(the left half of an odd gap is the smaller); a cell that is a plain decimal
number aligned right and anything else left; cells wider than 30 columns wrapped
at spaces into several lines, breaking where the lines come out most even.

Widths are counted in characters: our cells are ASCII (addresses, names).

Each row is sized as it is added, as tablewriter does: a long cell wraps at the
column's width *so far*, and a later, wider row widens the column without
re-wrapping the earlier one.  That is tablewriter's behaviour, kept on purpose.
"""

from __future__ import annotations

import re

#: tablewriter's MAX_ROW_WIDTH: a cell wider than this is wrapped at spaces.
MAX_WIDTH = 30
_DECIMAL = re.compile(r"^-?(?:\d{1,3}(?:,\d{3})*|\d+)(?:\.\d+)?$")
#: The cost tablewriter adds for a line longer than the limit (one word too long).
_PENALTY = 100_000


def _title(header: str) -> str:
    return header.replace("_", " ").strip().upper() or (" " if header else "")


def _center(text: str, width: int) -> str:
    gap = width - len(text)
    if gap <= 0:
        return text
    left = gap // 2
    return " " * left + text + " " * (gap - left)


def wrap(text: str, limit: int) -> list[str]:
    """Lines of ``text`` no wider than ``limit`` (or than its longest word), with
    minimal raggedness: the sum over lines of (limit - length)², as tablewriter's
    ``WrapString`` computes it."""
    words = text.replace("\n", " ").split(" ")
    limit = max([limit, *(len(w) for w in words)])
    n = len(words)
    # span[i][j]: the length of words i..j joined by single spaces.
    span = [[0] * n for _ in range(n)]
    for i in range(n):
        span[i][i] = len(words[i])
        for j in range(i + 1, n):
            span[i][j] = span[i][j - 1] + 1 + len(words[j])
    cost = [0] * n
    breaks = [n] * n
    for i in range(n - 1, -1, -1):
        if span[i][n - 1] <= limit:
            continue  # the rest fits on one line: cost 0, break at the end
        best = None
        for j in range(i + 1, n):
            room = limit - span[i][j - 1]
            c = room * room + cost[j] + (_PENALTY if span[i][j - 1] > limit else 0)
            if best is None or c < best:
                best, breaks[i] = c, j
        cost[i] = best if best is not None else 0
    lines = []
    i = 0
    while i < n:
        lines.append(" ".join(words[i : breaks[i]]))
        i = breaks[i]
    return lines


def _numeric(text: str) -> bool:
    # tablewriter also tries a "percent" pattern, but it is written so that it never
    # matches: "12%" is aligned left there, and so here.
    return bool(_DECIMAL.match(text.strip()))


def render(headers: list[str], rows: list[list[str]]) -> str:
    """The table as text, every line ending in a newline."""
    widths = [min(len(h), MAX_WIDTH) for h in headers]
    cells: list[list[list[str]]] = []  # row -> column -> lines
    for row in rows:
        lines_of_row = []
        for col, text in enumerate(row):
            widths[col] = max(widths[col], min(len(text), MAX_WIDTH))
            lines = wrap(text, widths[col])
            widths[col] = max(widths[col], *(len(line) for line in lines))
            lines_of_row.append(lines)
        cells.append(lines_of_row)

    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"
    out = [rule]
    out.append(
        "|"
        + "|".join(f" {_center(_title(h), w)} " for h, w in zip(headers, widths, strict=True))
        + "|\n"
    )
    out.append(rule)
    for lines_of_row in cells:
        height = max((len(lines) for lines in lines_of_row), default=1)
        for x in range(height):
            parts = []
            for col, lines in enumerate(lines_of_row):
                text = lines[x] if x < len(lines) else ""
                if _numeric(text):
                    parts.append(f" {text.rjust(widths[col])} ")
                else:
                    parts.append(f" {text.ljust(widths[col])} ")
            out.append("|" + "|".join(parts) + "|\n")
    out.append(rule)
    return "".join(out)
