"""The names IPython keeps in a notebook's namespace, so a chain that starts at one says what it is.

``Out``, ``_``, ``__``, ``___`` and ``_N`` keep cell results alive: a classic notebook leak that would otherwise
read as "a dict in ``__main__``".
"""

from __future__ import annotations

import sys

__all__ = ["kernel_note", "notebook_namespace"]


#: Names IPython keeps in a notebook's namespace, and what each holds: a classic notebook leak, named as such.
_KERNEL_NAMES = {
    "Out": "IPython's output cache: every cell's result is kept (%reset -f out frees it)",
    "_oh": "IPython's output cache: every cell's result is kept (%reset -f out frees it)",
    "_": "IPython's last cell result",
    "__": "IPython's second-to-last cell result",
    "___": "IPython's third-to-last cell result",
    "In": "IPython's input history",
    "_ih": "IPython's input history",
    "_dh": "IPython's directory history",
}


def kernel_note(root: str) -> str:
    """`` (IPython's output cache: ...)`` when ``root`` is a name IPython keeps in a notebook's namespace (only
    where IPython is loaded: a script's own global called ``Out`` is the script's); else ``""``."""
    module, _, name = root.partition(".")
    if module != "__main__" or "IPython" not in sys.modules:
        return ""
    if name in _KERNEL_NAMES:
        return f" ({_KERNEL_NAMES[name]})"
    if name[:1] == "_" and name[1:].isdigit():
        return f" (IPython's cached result of cell {name[1:]}; %reset -f out frees it)"
    if name.startswith("_i") and (name[2:].isdigit() or name in ("_i", "_ii", "_iii")):
        return " (IPython's input history)"
    return ""


def notebook_namespace() -> dict[str, object] | None:
    """The namespace a notebook's cells run in (IPython's ``user_ns``), when this process is an IPython kernel:
    what ``__main__`` means to the user there, although ``sys.modules["__main__"]`` is the kernel's launcher."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    if get is None:
        return None
    try:
        shell = get()
    except Exception:
        return None
    ns = getattr(shell, "user_ns", None)
    return ns if type(ns) is dict else None
