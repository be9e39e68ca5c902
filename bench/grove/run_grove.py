#!/usr/bin/env python3
"""Run HashiCorp Grove 2.2.0's Atlassian connector against the orgtrail simulator.

Two subcommands (run them with the venv's python, where `grove==2.2.0` is installed):

  collect  One Grove collection (the real `grove.entrypoints.base.entrypoint`, i.e. what the
           `grove` console script runs) with:
             - config handler `local_file` (one generated connector document, outputs {"logs": "raw"}),
             - cache handler `local_memory` (a fresh process = a first run = the fixed 7-day window),
             - output handler `local_file` (gzipped NDJSON, one file per page; the default) or
               `local_stdout` (one JSON line per event on stdout; pass --output local_stdout).
           The only change to Grove is a monkeypatch of the module constant
           `grove.connectors.atlassian.api.API_BASE_URI` (hard-coded to https://api.atlassian.com)
           so that it points at the simulator. The API key is read from $GROVE_BENCH_KEY.
           Grove exits 0 even when a collection fails; this wrapper exits 1 if Grove logged an
           ERROR/CRITICAL record, and prints the collection wall time on stderr.

  count    Counts the events Grove wrote and compares their ids with the simulator's ground truth
           (`/_sim/orgs/{org}/events?idsOnly=true`). Prints one JSON object.
"""

import argparse
import gzip
import json
import logging
import os
import sys
import tempfile
import time
import urllib.request

GROVE_VERSION = "2.2.0"


class _ErrorCounter(logging.Handler):
    """Counts ERROR and CRITICAL records (Grove logs failures but still exits 0)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def collect(args):
    key = os.environ.get("GROVE_BENCH_KEY")
    if not key:
        sys.exit("run_grove.py: set GROVE_BENCH_KEY to the simulator's API key")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="grove-bench-config-") as config_dir:
        doc = {
            "name": "orgtrail-bench",
            "identity": args.org,
            "connector": "atlassian_audit_events",
            "key": key,
            # Raw stream only: Grove's default also writes a "processed" copy of every page,
            # which with no processors configured is the same data written twice.
            "outputs": {"logs": "raw"},
        }
        path = os.path.join(config_dir, "atlassian.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)

        os.environ.update(
            {
                "GROVE_CONFIG_HANDLER": "local_file",
                "GROVE_CONFIG_LOCAL_FILE_PATH": config_dir,
                "GROVE_CACHE_HANDLER": "local_memory",
                "GROVE_OUTPUT_HANDLER": args.output,
                "GROVE_OUTPUT_LOCAL_FILE_PATH": out,
                "GROVE_WORKER_COUNT": "1",
            }
        )
        os.environ.pop("GROVE_SECRET_HANDLER", None)

        import grove.__about__
        import grove.connectors.atlassian.api as atlassian_api
        from grove.entrypoints import base, local_process

        if grove.__about__.__version__ != GROVE_VERSION:
            sys.exit(f"run_grove.py: expected grove {GROVE_VERSION}, found {grove.__about__.__version__}")
        original = atlassian_api.API_BASE_URI
        if not original.startswith("https://api.atlassian.com/"):
            sys.exit(f"run_grove.py: unexpected API_BASE_URI {original!r}; the monkeypatch needs review")
        # Client.__init__ formats this module global at construction time, so patching it before
        # the connector is instantiated redirects every request (path and query unchanged).
        atlassian_api.API_BASE_URI = args.base_url.rstrip("/") + "/admin/v1/orgs/{identity}"

        errors = _ErrorCounter()
        logging.getLogger("grove").addHandler(errors)

        t0 = time.perf_counter()
        base.entrypoint(context={"runtime": __file__, **local_process.runtime_information()})
        elapsed = time.perf_counter() - t0

    sys.stdout.flush()
    print(f"grove-bench: collection wall time {elapsed:.3f} s", file=sys.stderr)
    if errors.records:
        for r in errors.records:
            exc = getattr(r, "exception", None)
            print(f"grove-bench: grove logged {r.levelname}: {r.getMessage()} {exc or ''}", file=sys.stderr)
        sys.exit(1)


def _written_ids(args):
    """Yields the `id` of every event Grove wrote, in file order."""
    if args.output == "local_stdout":
        with open(args.stdout_file, "rb") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)["message"].get("id")
        return
    files = []
    for root, _, names in os.walk(args.out):
        files.extend(os.path.join(root, n) for n in names if n.endswith(".json.gz"))
    for path in files:
        with gzip.open(path, "rb") as f:
            # Grove joins entries with "\r\n"; no entry contains a raw newline.
            for line in f.read().split(b"\r\n"):
                if line.strip():
                    yield json.loads(line).get("id")


def count(args):
    written = 0
    seen = {}
    for i in _written_ids(args):
        written += 1
        seen[i] = seen.get(i, 0) + 1
    with urllib.request.urlopen(
        f"{args.base_url.rstrip('/')}/_sim/orgs/{args.org}/events?idsOnly=true"
    ) as r:
        truth = set(json.load(r)["ids"])
    result = {
        "written": written,
        "unique": len(seen),
        "duplicates": written - len(seen),
        "truth": len(truth),
        "missing": len(truth - seen.keys()),
        "unknown": len(seen.keys() - truth),
    }
    print(json.dumps(result))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("collect", "count"):
        s = sub.add_parser(name)
        s.add_argument("--base-url", required=True, help="simulator base URL, e.g. http://127.0.0.1:18431")
        s.add_argument("--org", required=True, help="organization id")
        s.add_argument("--out", required=True, help="output directory (local_file output)")
        s.add_argument("--output", choices=("local_file", "local_stdout"), default="local_file")
        if name == "count":
            s.add_argument("--stdout-file", help="captured stdout of `collect --output local_stdout`")
    args = p.parse_args()
    if args.cmd == "collect":
        collect(args)
    else:
        count(args)


if __name__ == "__main__":
    main()
