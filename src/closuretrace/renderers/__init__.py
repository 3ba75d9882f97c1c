"""Renderers: pure functions ``render(session) -> str``; they never write files or print."""
