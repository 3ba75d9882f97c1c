"""``python -m closuretrace ...``: the same as the ``closuretrace`` command."""

from closuretrace.cli.main import entry

if __name__ == "__main__":
    entry()
