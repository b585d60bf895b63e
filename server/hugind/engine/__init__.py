"""Scheduling, sampling and sessions over llama.cpp contexts; knows nothing of HTTP."""
