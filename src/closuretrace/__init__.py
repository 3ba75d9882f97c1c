"""closuretrace: closure and memory diagnostics for Python and Keras.

Which closures your program creates and which stay alive, how memory grows per training cycle (slope with a
95% confidence interval), and the chain of references that keeps the growth alive.

>>> import closuretrace
>>> @closuretrace.track
... def outer_loss(offset):
...     def loss_function(y_true, y_pred):
...         return y_pred - y_true + offset
...     return loss_function
>>> with closuretrace.Profiler() as prof:          # doctest: +SKIP
...     for i in range(5):
...         with prof.cycle():
...             loss = outer_loss(i)
"""

from __future__ import annotations

from closuretrace._version import __version__
from closuretrace.instrument.track import end_cycle_after, track
from closuretrace.profiler import ProfileOptions, Profiler
from closuretrace.reading import read_session as load_session
from closuretrace.renderers.text import render as render_text
from closuretrace.session import Session, SessionError


def load_ipython_extension(ip: object) -> None:
    """``%load_ext closuretrace`` in IPython or Jupyter: the magics of :mod:`closuretrace.notebook`."""
    from closuretrace.notebook import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: object) -> None:
    """``%unload_ext closuretrace``."""
    from closuretrace.notebook import unload_ipython_extension as unload

    unload(ip)


__all__ = [
    "ProfileOptions",
    "Profiler",
    "Session",
    "SessionError",
    "__version__",
    "end_cycle_after",
    "load_ipython_extension",
    "load_session",
    "render_text",
    "track",
    "unload_ipython_extension",
]
