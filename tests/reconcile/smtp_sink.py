"""An SMTP sink on 127.0.0.1 for core's outgoing mail: every message as one JSON file.

Run with the Mailman virtualenv's Python (aiosmtpd is one of Mailman's own dependencies):
`python smtp_sink.py PORT DIRECTORY`. Each accepted message becomes DIRECTORY/NNNNNN.json with
the envelope sender, the recipients and the message text, written whole (renamed into place),
so a reader never sees half a message. `mailman_fixture.SmtpSink` starts and reads it.
"""

from __future__ import annotations

import itertools
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class Saver:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.numbers = itertools.count()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            number = next(self.numbers)
        record = {"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                  "data": envelope.original_content.decode("utf-8", "surrogateescape")}
        part = self.directory / f".{number:06d}.part"
        part.write_text(json.dumps(record), encoding="utf-8")
        part.rename(self.directory / f"{number:06d}.json")
        return "250 OK"


def main() -> None:
    port, directory = int(sys.argv[1]), Path(sys.argv[2])
    controller = Controller(Saver(directory), hostname="127.0.0.1", port=port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
