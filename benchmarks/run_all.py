"""Run every benchmark with its defaults (``make bench``); each writes results/<name>.md.

Run a script directly for its own options, e.g. ``python benchmarks/bench_flow.py --help``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script in sorted(HERE.glob("bench_*.py")):
    print(f"== {script.name}", flush=True)
    subprocess.run([sys.executable, str(script)], check=True)
