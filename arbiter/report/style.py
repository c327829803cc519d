"""What every plot of `arbiter report` shares: the resolution, the colours of a set of lines
and the log step axis.

Imported only by the modules that draw (`plots`, `seed_curves`, `parallel_coordinates`), so
that no other command pays for matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from arbiter.ui import si

DPI = 120


def colors(n: int) -> list[Any]:
    """n distinct line colours: tab10 and tab20 while they last, then evenly along turbo."""
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, n)]


def step_axis(ax: Axes, steps: Iterable[int]) -> None:
    """A log step axis labelled in plain numbers (500, 2k, 10k). Over two decades or less the
    ticks go 1-2-5, since a single decade tick would leave a short run's axis almost bare."""
    positive = [s for s in steps if s > 0]
    decades = math.log10(max(positive) / min(positive)) if positive else 0
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 2 else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: si(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())
