"""Where closuretrace's own code lives, so its frames and objects are told apart from the program's."""

from __future__ import annotations

import os

#: The package directory, with a trailing separator (a prefix of every file of closuretrace's own).
PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")


def is_tool_file(filename: str) -> bool:
    """Whether ``filename`` (a code object's ``co_filename``) is one of closuretrace's own files."""
    return filename.startswith(PACKAGE_DIR)
