"""Run the fuzz targets of edgecore_fuzz_targets.py (see README.md in this directory).

    python tests/fuzz/run.py --budget 100000            # every target, atheris if installed
    python tests/fuzz/run.py --target mp_http --budget 1000000
    python tests/fuzz/run.py --engine hypothesis --budget 20000

With atheris each target runs in its own subprocess (libFuzzer exits the process when
done), coverage-guided over the edgecore / edgecore_ports modules, from the seeds in
SEEDS. A crash leaves ``crash-*`` input files in --artifacts and the run exits 1.
Without atheris (or with --engine hypothesis) each target is driven by hypothesis with
``max_examples=budget`` over raw bytes and over the mutated seeds.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for p in (HERE, ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)


def _have_atheris():
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_atheris_child(name, argv):
    """In the child: fuzz one target with atheris until libFuzzer's -runs are done."""
    import atheris

    with atheris.instrument_imports(include=["edgecore", "edgecore_ports"]):
        import edgecore_fuzz_targets as targets

    target = targets.TARGETS[name]

    def one(data):
        target(bytes(data))

    atheris.Setup([sys.argv[0]] + argv, one)
    atheris.Fuzz()


def run_atheris(names, budget, max_len, artifacts):
    import edgecore_fuzz_targets as targets

    failed = []
    for name in names:
        corpus = tempfile.mkdtemp(prefix="edgecore-fuzz-%s-" % name)
        for i, seed in enumerate(targets.SEEDS.get(name, [])):
            with open(os.path.join(corpus, "seed-%d" % i), "wb") as f:
                f.write(seed)
        prefix = os.path.join(artifacts, "%s-" % name)
        argv = [
            "-runs=%d" % budget,
            "-max_len=%d" % max_len,
            "-artifact_prefix=%s" % prefix,
            "-print_final_stats=1",
            corpus,
        ]
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", name, "--"] + argv,
            capture_output=True,
            text=True,
        )
        took = time.monotonic() - started
        tail = [ln for ln in proc.stderr.splitlines() if ln.startswith(("stat::", "=="))]
        print("%-16s atheris runs=%d rc=%d %.1fs" % (name, budget, proc.returncode, took))
        if proc.returncode != 0:
            failed.append(name)
            print("\n".join(proc.stderr.splitlines()[-40:]))
        else:
            for line in tail:
                if "number_of_executed_units" in line or "new_units_added" in line:
                    print("    " + line)
    return failed


def _hypothesis_check(target, seeds, budget, max_len):
    """A hypothesis test running `target` over raw bytes and mutated `seeds`."""
    import edgecore_fuzz_targets as targets
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    mutated = st.tuples(
        st.sampled_from(seeds),
        st.lists(st.integers(0, 1 << 16), max_size=8),
        st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=8),
    ).map(targets.mutate)

    @settings(
        max_examples=budget,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.one_of(st.binary(max_size=max_len), mutated))
    def check(data):
        target(data)

    return check


def run_hypothesis(names, budget, max_len):
    import edgecore_fuzz_targets as targets

    failed = []
    for name in names:
        check = _hypothesis_check(
            targets.TARGETS[name], targets.SEEDS.get(name) or [b""], budget, max_len
        )
        started = time.monotonic()
        try:
            check()
            status = "ok"
        except Exception as exc:  # report every target, then fail the run
            failed.append(name)
            status = "FAILED: %s: %s" % (type(exc).__name__, str(exc)[:300])
        print("%-16s hypothesis examples=%d %.1fs %s"
              % (name, budget, time.monotonic() - started, status))
    return failed


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return run_atheris_child(argv[1], argv[3:])
    import edgecore_fuzz_targets as targets

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=100000, help="runs/examples per target")
    parser.add_argument("--target", action="append", choices=sorted(targets.TARGETS),
                        help="only this target (repeatable); default all")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--max-len", type=int, default=4096)
    parser.add_argument("--artifacts", default=os.path.join(tempfile.gettempdir(),
                                                            "edgecore-fuzz-artifacts"))
    args = parser.parse_args(argv)
    names = args.target or sorted(targets.TARGETS)
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if _have_atheris() else "hypothesis"
    if engine == "atheris":
        os.makedirs(args.artifacts, exist_ok=True)
        failed = run_atheris(names, args.budget, args.max_len, args.artifacts)
    else:
        failed = run_hypothesis(names, args.budget, args.max_len)
    if failed:
        print("FAILED targets: %s (artifacts: %s)" % (", ".join(failed), args.artifacts))
        return 1
    print("all %d targets passed" % len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
