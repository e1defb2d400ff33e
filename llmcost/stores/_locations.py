"""Where a durable store keeps entries it could not write (spill files) or could not hold (dead letters): first a
directory next to the store, then, when that cannot be written (permission denied, a read-only or full file
system), per-user fallback directories named by a hash of the store's absolute path.

The fallbacks, in order:

1. ``$XDG_STATE_HOME/llmcost/<kind>/<hash>``, else ``~/.local/state/llmcost/<kind>/<hash>`` (the XDG base
   directory rule: state that should survive a reboot, per user);
2. ``<system temp dir>/llmcost-<uid>/<kind>/<hash>``, made ``0o700`` and used only if this user owns it (the
   temp dir may be cleared at reboot, but it is often the only place left).

``<kind>`` is ``spill`` or ``dead-letter``; ``<hash>`` is the first 16 hex digits of the SHA-256 of the store's
absolute path (or, for a database, its URL without the password: ``store_identity``), and each fallback directory
holds a ``_store`` file naming it for humans. The store looks in
all of them when it opens, so the next open by the same user (any process) replays or reports what is there.

Example::

    fallback_dirs("/data/costs.duckdb", "spill")
    # ['/home/me/.local/state/llmcost/spill/5d41402abc4b2a76', '/tmp/llmcost-1000/spill/5d41402abc4b2a76']
"""

from __future__ import annotations

import hashlib
import os
import tempfile

from ._disk import make_dirs, write_atomic

__all__ = ["fallback_dirs", "prepare_fallback", "store_identity"]


def _uid() -> int:
    return os.getuid() if hasattr(os, "getuid") else 0


def store_identity(store_path: str) -> str:
    """What names the store in its fallback directories: a database's URL (``postgresql://...``, no password in
    it) as it is, a path made absolute."""
    return store_path if "://" in store_path else os.path.abspath(store_path)


def fallback_dirs(store_path: str, kind: str) -> list[str]:
    """The fallback directories of ``kind`` (``spill`` or ``dead-letter``) for the store at ``store_path`` (a path,
    or a database URL without its password)."""
    digest = hashlib.sha256(store_identity(store_path).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    state = os.environ.get("XDG_STATE_HOME") or ""
    if not os.path.isabs(state):  # the XDG rule: a relative value is invalid and ignored
        state = os.path.join(os.path.expanduser("~"), ".local", "state")
    found = []
    if os.path.isabs(state):  # expanduser leaves "~" when there is no home
        found.append(os.path.join(state, "llmcost", kind, digest))
    found.append(os.path.join(tempfile.gettempdir(), f"llmcost-{_uid()}", kind, digest))
    return found


def prepare_fallback(directory: str, store_path: str) -> None:
    """Make fallback ``directory`` (private to this user where it is under the temp dir) and its ``_store`` note.

    Raises ``OSError`` if it cannot be made, or if its per-user temp root belongs to someone else.
    """
    root = os.path.dirname(os.path.dirname(directory))
    if os.path.basename(root) == f"llmcost-{_uid()}":
        if not os.path.isdir(root):
            os.makedirs(root, mode=0o700, exist_ok=True)
        info = os.lstat(root)
        if hasattr(os, "getuid") and (info.st_uid != _uid() or not os.path.isdir(root) or os.path.islink(root)):
            raise PermissionError(f"{root} is not a directory of this user; not used for llmcost's files")
    make_dirs(directory)
    note = os.path.join(directory, "_store")
    if not os.path.exists(note):
        write_atomic(note, (store_identity(store_path) + "\n").encode("utf-8", "surrogatepass"))
