"""The file source: a directory of Kubernetes manifests, reloaded when a file changes.

Polls the directory (a stat of each file, every `interval` seconds, 0.25 s by default), so
it needs no inotify and works on any filesystem; an added, edited or deleted file is
picked up well within a second. Only the files that changed are read again.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import structlog

from xds_ingress.diagnostics import Diagnostic
from xds_ingress.manifests import Document, load_file, manifest_files, select
from xds_ingress.store import Store

log = structlog.get_logger("xds_ingress.sources.files")

Signature = tuple[int, int, int]  # (mtime_ns, size, inode)


class FileSource:
    def __init__(self, paths: list[str | Path], store: Store, *, interval: float = 0.25) -> None:
        self.paths = [Path(p) for p in paths]
        self.store = store
        self.interval = interval
        self.synced = asyncio.Event()
        self._files: dict[Path, tuple[Signature, list[Document], list[Diagnostic]]] = {}
        self._lock = threading.Lock()

    def scan(self) -> int:
        """Read what changed since the last scan into the store. Returns the number of object changes."""
        with self._lock:
            return self._scan()

    def _scan(self) -> int:
        current = manifest_files(self.paths)
        seen: set[Path] = set()
        dirty = False
        for f in current:
            try:
                st = f.stat()
            except OSError:
                continue
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
            seen.add(f)
            cached = self._files.get(f)
            if cached is not None and cached[0] == sig:
                continue
            docs, diags = load_file(f)
            self._files[f] = (sig, docs, diags)
            dirty = True
        for gone in set(self._files) - seen:
            del self._files[gone]
            dirty = True
        if not dirty and self.synced.is_set():
            return 0
        documents: list[Document] = []
        diagnostics: list[Diagnostic] = []
        for f in sorted(self._files):
            _sig, docs, diags = self._files[f]
            documents.extend(docs)
            diagnostics.extend(diags)
        selected, dup = select(documents)
        self.store.set_source_diagnostics("files", diagnostics + dup)
        changes = self.store.replace({k: d.raw for k, d in selected.items()})
        if changes:
            log.info("files.changed", changes=changes, files=len(self._files), objects=len(selected))
        return changes

    async def run(self) -> None:
        missing = [str(p) for p in self.paths if not p.exists()]
        if missing:
            log.warning("files.missing", paths=missing)
        while True:
            try:
                await asyncio.to_thread(self.scan)
            except Exception:  # noqa: BLE001 - keep watching; the next scan may succeed
                log.exception("files.scan_failed")
            self.synced.set()
            await asyncio.sleep(self.interval)


