"""What a job's printed output costs the worker that runs it.

Runs the real launcher and runner.py (oneshot, as a build's smoke test, an Async
execution, a training or monitoring run do) on a model whose score() prints `--mib`
MiB of two-character lines as fast as it can, with a line callback that only counts,
and prints the worker side's peak resident memory before and after, the lines counted
and the wall time. The worker's memory must stay bounded whatever the model writes
(docs/security.md, "Limits").

    .venv/bin/python bench/output_flood.py [--mib 40]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from inprocess import setup_django  # noqa: E402  (bench/ is this script's folder)

setup_django()

from models_app.runtime.oneshot import run_oneshot  # noqa: E402
from models_app.runtime.sandbox import Limits, UserCode  # noqa: E402

SOURCE = """
import os
def score(data, base_path):
    buf = b"x\\n" * (1 << 19)  # 1 MiB of lines
    for _ in range({mib}):
        view = memoryview(buf)
        while view:
            view = view[os.write(2, view):]
    return {{"done": True}}
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=40, help="MiB of output the model prints (default 40)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="neomaril-flood-"))
    try:
        source = folder / "app.py"
        source.write_text(textwrap.dedent(SOURCE.format(mib=args.mib)))
        code = UserCode(
            python=Path(sys.executable),
            env={},
            cwd=folder,
            read_only=(folder,),
            writable=None,
            limits=Limits(memory_mb=0, names={"memory": "NEOMARIL_BUILD_MEMORY_LIMIT_MB"}),
        )
        lines = 0

        def count(_line: str) -> None:
            nonlocal lines
            lines += 1

        before = peak_rss_mb()
        started = time.monotonic()
        result = run_oneshot(
            code,
            source=str(source),
            entrypoint="score",
            kind="sync",
            args=['{"x": 1}', str(folder)],
            timeout=1200,
            on_output_line=count,
        )
        seconds = time.monotonic() - started
        print(f"model printed {args.mib} MiB of 2-character lines; answered ok={result.ok}")
        print(f"lines passed to the callback: {lines:,}; kept output: {len(result.output):,} characters")
        print(f"worker side peak RSS: {before:.0f} MB before, {peak_rss_mb():.0f} MB after; {seconds:.1f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
