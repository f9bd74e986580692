"""Two settings or two versions of this project side by side: the same pipeline on two
portals that differ by their environment or their code, wrk rounds alternating between
them so the machine's noise hits both alike.

    .venv/bin/python bench/ab.py '{"WEB_CONCURRENCY": "2"}' '{"WEB_CONCURRENCY": "1"}' [--rounds 3]
    .venv/bin/python bench/ab.py --b-code HEAD~1    # this checkout (A) against a commit (B)

Each round runs c=1 then c=8 on A, then on B, and prints req/s, p50 and the CPU per call
of the model runners and of the web workers (from /proc). The model follows the load
(default replicas), as in peers.py. For tuning: one setting's effect, not the targets.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sync_bench import SKLEARN_SOURCE, cpu_split, deploy, ensure_wrk, in_process, train, wrk  # noqa: E402
from tests.helpers.processes import PortalClient, RunningPortal  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", nargs="?", default="{}", help="A's extra environment, as a JSON object")
    parser.add_argument("b", nargs="?", default="{}", help="B's extra environment, as a JSON object")
    parser.add_argument(
        "--b-code",
        metavar="REVISION",
        help="B runs this git revision (checked out in the work folder; this checkout's virtualenv)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    args = parser.parse_args()
    ensure_wrk()
    settings = {"A": json.loads(args.a), "B": json.loads(args.b)}
    work = Path(tempfile.mkdtemp(prefix="neomaril-ab-"))
    python = train(work)
    body = (work / "schema.json").read_text()
    print(f"in-process score(): {in_process(python, work, SKLEARN_SOURCE)}", flush=True)
    code = {"A": ROOT, "B": ROOT}
    labels = {name: json.dumps(env) for name, env in settings.items()}
    if args.b_code:
        code["B"] = work / "b-code"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(code["B"]), args.b_code], check=True
        )
        labels = {"A": f"this checkout {labels['A']}", "B": f"{args.b_code} {labels['B']}"}
    portals: dict[str, RunningPortal] = {}
    try:
        for name, env in settings.items():
            portals[name] = RunningPortal(work / name, extra_env=env, code=code[name])
        targets = {}
        for name, portal in portals.items():
            portal.wait_healthy()
            client = PortalClient(portal)
            token = client.create_group("bench")
            model_hash = deploy(client, work, SKLEARN_SOURCE, "breast cancer", replicas=None)
            targets[name] = (f"{portal.url}/api/v1/run/{model_hash}", token)
            wrk(*targets[name], body, connections=8, duration=3, folder=work, warm_up=True)
        for round_ in range(1, args.rounds + 1):
            for connections in (1, 8):
                for name, portal in portals.items():
                    before = cpu_split(portal)
                    result = wrk(
                        *targets[name], body, connections=connections, duration=args.duration, folder=work
                    )
                    after = cpu_split(portal)
                    per_call = {
                        k: (after[k] - before[k]) * 1000 / result["requests"] for k in ("runners", "web")
                    }
                    print(
                        f"round {round_} c={connections} {name} {labels[name]}: {result['rps']:.0f} req/s, "
                        f"p50 {result['p50_ms']:.2f} ms; CPU per call: runners {per_call['runners']:.3f} ms, "
                        f"web {per_call['web']:.3f} ms",
                        flush=True,
                    )
    finally:
        for portal in portals.values():
            portal.stop()
        if args.b_code:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(code["B"])], check=False
            )


if __name__ == "__main__":
    main()
