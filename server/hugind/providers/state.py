"""What the providers keep across restarts: runtime keys and the activity log, in one folder.

``server.state_dir`` (relative to the working directory), or ``sessions.dir`` when unset: the
folder Hugind already writes to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hugind.config import Config
from hugind.providers import activity, keystore
from hugind.providers.activity import ActivityLog
from hugind.providers.keystore import KeyStore


@dataclass(frozen=True)
class ProviderState:
    activity: ActivityLog
    keystore: KeyStore


def state_dir(config: Config, base_dir: Path) -> Path:
    folder = Path(config.server.state_dir or config.sessions.dir).expanduser()
    return folder if folder.is_absolute() else base_dir / folder


def open_state(config: Config, base_dir: Path | None) -> ProviderState:
    """The activity log and key store under the state folder of ``base_dir``; with
    ``base_dir=None`` (an app embedded by tests) both live in memory only.

    Raises:
        KeyStoreError: the key store cannot be read with ``server.secret_key``.
    """
    if base_dir is None:
        return ProviderState(ActivityLog(), KeyStore(None, config.server.secret_key))
    folder = state_dir(config, base_dir)
    store = KeyStore(folder / keystore.FILE_NAME, config.server.secret_key)
    return ProviderState(ActivityLog(path=folder / activity.FILE_NAME), store)
