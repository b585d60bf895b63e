"""One configured local model and what is loaded for it now."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hugind.config import ModelConfig
from hugind.engine.types import ModelInfo

if TYPE_CHECKING:
    from hugind.engine.embedding import EmbeddingWorker
    from hugind.engine.prompt import ChatTemplate
    from hugind.engine.worker import ModelWorker
    from hugind.llama.context import Vocab


@dataclass(eq=False)
class ModelHandle:
    """States: ``unloaded`` -> ``loading`` -> ``ready`` (<-> ``restarting``) -> ``unloading``
    -> ``unloaded``; ``failed`` when the file cannot be loaded. Transitions happen under
    ``lock``; ``state`` is read anywhere."""

    cfg: ModelConfig
    kind: str
    state: str = "unloaded"
    error: str | None = None  # the reason a client may read: it names no server path
    created: int = field(default_factory=lambda: int(time.time()))
    path: Path | None = None
    worker: ModelWorker | None = None
    embedder: EmbeddingWorker | None = None
    vocab: Vocab | None = None
    n_ctx: int = 0
    n_ctx_train: int = 0
    template: ChatTemplate | None = None
    template_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    generation: int = 0  # bumped on every load: callbacks of an older worker are ignored
    inflight: int = 0  # embedding requests running on it (event loop only)
    load_started: float = 0.0
    load_seconds: float | None = None
    loaded_since: float | None = None
    last_used: float | None = None
    size_bytes: int = 0

    @property
    def loaded(self) -> bool:
        return self.state in ("loading", "ready", "restarting", "unloading")

    def busy(self) -> int:
        """Requests queued or running on it."""
        return self.inflight + (self.worker.busy() if self.worker is not None else 0)

    def touch(self) -> None:
        self.last_used = time.time()

    def info(self) -> ModelInfo:
        return ModelInfo(id=self.cfg.id, aliases=list(self.cfg.aliases), kind=self.kind,
                         state=self.state, error=self.error, n_ctx=self.n_ctx,
                         created=self.created, preload=self.cfg.preload,
                         size_bytes=self.size_bytes, loaded_since=self.loaded_since,
                         last_used=self.last_used, load_seconds=self.load_seconds,
                         n_ctx_train=self.n_ctx_train,
                         facts={"chat_template": self.template is not None})
