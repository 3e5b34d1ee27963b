"""The transcript: every step of an agent run as JSON lines, written as it happens.

Written line by line (and flushed) so a run that is killed still leaves what it did. Each line is
`{"t": seconds since start, "event": ..., ...}`; messages use the provider-neutral schema, so a
transcript can be read back into a script (`bot.providers.scripted.turns_from_messages`).
Every line is redacted before it is written (`bot.secrets`): tool outputs arrive redacted by the toolbox,
but a model can echo a secret in its own words, and a task can quote one from an issue or a `.env` file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from bot.secrets import Redactor, default_redactor


class Transcript:
    def __init__(self, path: Path | None, redactor: Redactor | None = None) -> None:
        """`redactor` defaults to the process's (`bot.secrets.install`), looked up at each write."""
        self.path = path
        self._redactor = redactor
        self._file: IO[str] | None = None
        self._started = time.monotonic()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> None:
        if self._file is None:
            return
        line = {"t": round(time.monotonic() - self._started, 3), "event": event}
        line.update(
            {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in fields.items()}
        )
        redacted = (self._redactor or default_redactor()).redact_obj(line)
        self._file.write(json.dumps(redacted, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_transcript(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
