"""Hugind: a local-inference server for GGUF models that speaks the OpenAI API."""

from __future__ import annotations

__version__ = "0.1.0"
