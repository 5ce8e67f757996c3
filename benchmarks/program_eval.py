"""Wall time and peak memory of one whole program evaluation under Pulumi mocks.

Run from the repository root: `python benchmarks/program_eval.py`. The measurement starts
before the Pulumi SDK and the providers are imported, so imports are included; memory is the
process's peak resident set size, with the bare interpreter's size before the imports for
comparison. (tracemalloc is not used: it roughly doubles the time it measures.)
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = {
    "hostname": "lists.example.org",
    "adminEmail": "postmaster@example.org",
    "dnsZone": "example.org",
    "mailDomains": ["example.org", "lists.example.org"],
    "adminPassword": "correct horse battery staple",
}


def main() -> None:
    baseline_mib = _peak_rss_mib()
    started = time.perf_counter()
    sys.path.insert(0, str(REPO))
    from tests.harness import run_program  # noqa: PLC0415 - the import is part of the measurement

    imported = time.perf_counter()
    run = run_program(CONFIG, secrets={"adminPassword"})
    finished = time.perf_counter()
    print(f"resources registered: {len(run.resources)}")
    print(f"wall time, imports included: {finished - started:.2f} s")
    print(
        f"  pulumi SDK import: {imported - started:.2f} s, "
        f"program incl. provider imports: {finished - imported:.2f} s"
    )
    print(
        f"peak RSS: {_peak_rss_mib():.1f} MiB (interpreter before imports: {baseline_mib:.1f} MiB)"
    )


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


if __name__ == "__main__":
    main()
