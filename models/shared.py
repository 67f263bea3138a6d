"""One loaded copy of a model per process, however many users it has.

A worker that serves a composite model also serves its members (``small-fusion`` and
``tiny-tfidf``; an ensemble and each model it stacks): loaded separately they would be held
twice.
:data:`SHARED` hands out one loaded detector per spec and counts its users; the last
:meth:`SharedDetectors.release` unloads it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from deepfake_stream.models.base import Detector, DetectorSpec


def _key(spec: DetectorSpec) -> str:
    """Specs that would load the same weights the same way share one copy."""
    return json.dumps(
        [
            *(spec.model_id, spec.kind, spec.version, spec.artifact, spec.device, spec.options),
            [_key(m) for m in spec.members],
        ],
        sort_keys=True,
        default=str,
    )


@dataclass
class _Entry:
    detector: Detector
    users: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SharedDetectors:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    async def acquire(self, spec: DetectorSpec) -> Detector:
        """The loaded detector for ``spec``: built and loaded by the first caller only."""
        from deepfake_stream.models.kinds import build_detector

        key = _key(spec)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(build_detector(spec))
        async with entry.lock:  # a second caller waits for the first one's load
            if not entry.detector.ready:
                try:
                    await entry.detector.load()
                except BaseException:
                    if entry.users == 0 and self._entries.get(key) is entry:
                        del self._entries[key]  # the next caller builds afresh
                    raise
            entry.users += 1
        return entry.detector

    async def release(self, detector: Detector) -> None:
        """One user fewer; the last one unloads. A detector not from here is just unloaded."""
        for key, entry in list(self._entries.items()):
            if entry.detector is detector:
                entry.users -= 1
                if entry.users > 0:
                    return
                del self._entries[key]
                break
        await detector.unload()

    def users(self, detector: Detector) -> int:
        return sum(e.users for e in self._entries.values() if e.detector is detector)


SHARED = SharedDetectors()
