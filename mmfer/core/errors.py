"""Errors every layer may raise or catch."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model folder or file that cannot be used; the message names it and why."""
