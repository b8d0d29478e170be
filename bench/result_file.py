"""A benchmark's measurements in one JSON file, tied to the settings that took them: a killed benchmark resumes from
the file, and a run under other settings (another config, another --set) is refused instead of mixed in.

    {"fingerprint": "3f2a...", "settings": {...the resolved config and the benchmark's own options...},
     "results": {key: measurement, ...}}
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import sys


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


class ResultFile:
    """`results` is the dict of measurements; `save()` writes the file (call it after each one)."""

    def __init__(self, path: str | pathlib.Path, config, **options):
        self.path = pathlib.Path(path)
        self.settings = {"config": config.to_dict(), **options}
        self.fingerprint = fingerprint(self.settings)
        stored = json.loads(self.path.read_text()) if self.path.exists() else None
        if stored is not None and stored.get("fingerprint") != self.fingerprint:
            print(f"{self.path}: holds measurements taken under other settings (fingerprint "
                  f"{stored.get('fingerprint')}, these are {self.fingerprint}); expected --out naming a new file, "
                  f"or the settings recorded in it", file=sys.stderr)
            raise SystemExit(2)
        self.results: dict = stored["results"] if stored else {}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"fingerprint": self.fingerprint, "settings": self.settings,
                                         "results": self.results}, indent=1, sort_keys=True))
