"""Analysis: verdicts, growing types, retention chains and advice, from a session's readings."""
