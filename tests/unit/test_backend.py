"""Build checks on llama.cpp's system info (no model needed)."""

from __future__ import annotations

import pytest

from hugind.llama import backend, params


@pytest.mark.parametrize(("info", "warned"), [
    (b"CPU : SSE3 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |", True),
    (b"CPU : SSE3 = 1 | AVX2 = 1 | REPACK = 1 |", False),
])
def test_amx_build_is_flagged(monkeypatch: pytest.MonkeyPatch, info: bytes,
                              warned: bool) -> None:
    monkeypatch.setattr(backend.llama_cpp, "llama_print_system_info", lambda: info)
    warnings = backend.build_warnings()
    assert bool(warnings) is warned
    if warned:
        assert "-U__AMX_INT8__" in warnings[0] and "Illegal instruction" in warnings[0]


@pytest.mark.parametrize("amx", [True, False])
def test_amx_build_loads_without_extra_buffer_types(monkeypatch: pytest.MonkeyPatch,
                                                   amx: bool) -> None:
    """AMX's weight layout lives in llama.cpp's extra buffer types: off on such a build."""
    monkeypatch.setattr(params, "build_has_amx", lambda: amx)
    mp = params.model_params(params.ModelParams(path="x.gguf", device="cpu"))
    assert mp.use_extra_bufts is (not amx)
