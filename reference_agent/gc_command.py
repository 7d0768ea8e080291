"""`reference-agent gc`: apply a retention policy to a state directory, once, from the shell."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from reference_agent.config import StateError
from reference_agent.retention import RetentionPolicy, apply, plan
from reference_agent.statedir import JOURNAL_NAME, StateLock


def main(args, parser) -> int:
    """Exit 0 after a pass (or a dry run), 1 when there is no journal. While an agent holds the
    state directory only DONE jobs' directories are removed: the cache belongs to that agent
    (its own --retain-* policy removes entries under its locks)."""
    if args.max_age is None and args.max_bytes is None:
        parser.error("gc: give --max-age and/or --max-bytes (what to keep)")
    root = Path(args.state_dir).resolve()
    if not (root / JOURNAL_NAME).is_file():
        print(f"reference-agent: no journal in {args.state_dir!r} (is it the agent's --state-dir?)",
              file=sys.stderr)
        return 1
    from reference_agent.journal import Journal

    policy = RetentionPolicy(args.max_age, args.max_bytes)
    try:
        lock = StateLock(root)
    except StateError:
        lock = None  # an agent runs: job directories only
    try:
        journal = Journal(root / JOURNAL_NAME, readonly=True)
        try:
            report = plan(root, journal.jobs(), list(journal.staged()), policy, include_cache=lock is not None)
        finally:
            journal.close()
        report.dry_run = args.dry_run
        if not args.dry_run:
            apply(root, report)
    finally:
        if lock is not None:
            lock.release()
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        for r in report.removed:
            print(f"{'would remove' if args.dry_run else 'removed'} {r.kind:<5} {r.name}  {r.bytes:>12} bytes  "
                  f"age {r.age:.0f} s  ({r.why})")
        print(report.summary())
    return 0
