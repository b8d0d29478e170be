"""A benchmark's measurements in one JSON file, tied to the settings that took them: a killed benchmark resumes from
the file, and a run under other settings (another config, another --set) is refused instead of mixed in. Stored
settings are read with today's config schema, so a config key added later, at its default, does not orphan a file.

    {"fingerprint": "3f2a...", "settings": {...the resolved config and the benchmark's own options...},
     "results": {key: measurement, ...}}
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sys

from primer_search.config import config_from_dict


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _current(settings: dict | None) -> str | None:
    """The fingerprint of stored settings read with today's config schema: a key added since, at its default,
    changes nothing that was measured (None: settings this schema cannot read)."""
    try:
        return fingerprint({**settings, "config": config_from_dict(settings["config"]).to_dict()})
    except (TypeError, KeyError, ValueError):
        return None


class ResultFile:
    """`results` is the dict of measurements; `save()` writes the file (call it after each one)."""

    def __init__(self, path: str | pathlib.Path, config, **options):
        self.path = pathlib.Path(path)
        self.settings = {"config": config.to_dict(), **options}
        self.fingerprint = fingerprint(self.settings)
        stored = json.loads(self.path.read_text()) if self.path.exists() else None
        if stored is not None and _current(stored.get("settings")) != self.fingerprint:
            print(f"{self.path}: holds measurements taken under other settings (fingerprint "
                  f"{stored.get('fingerprint')}, these are {self.fingerprint}); expected --out naming a new file, "
                  f"or the settings recorded in it", file=sys.stderr)
            raise SystemExit(2)
        self.results: dict = stored["results"] if stored else {}

    def save(self) -> None:
        """Write the file whole or not at all (a temporary file renamed over it): a kill mid-write, or a reader
        beside a running benchmark, never sees half of it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps({"fingerprint": self.fingerprint, "settings": self.settings,
                                       "results": self.results}, indent=1, sort_keys=True))
        os.replace(partial, self.path)
