"""Fault injection for the crash tests: ``SOUNDALIKE_FAILPOINT=name`` makes the process stop at that point.

At a matching point the process prints ``failpoint NAME reached`` on stderr and waits to be killed, so a test
can SIGKILL it at an exact step (for example between writing a new index file and switching the manifest)
instead of guessing with timers. Unset, a failpoint costs one environment lookup.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "SOUNDALIKE_FAILPOINT"


def failpoint(name: str) -> None:
    if os.environ.get(ENV) != name:
        return
    print(f"failpoint {name} reached", file=sys.stderr, flush=True)
    while True:  # the test kills us here
        time.sleep(3600)
