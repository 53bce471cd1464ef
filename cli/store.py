"""`compbench store`: list, remove or prune the compressed models in the models store."""

from __future__ import annotations

import argparse

from compbench.errors import CompbenchError


def add_parser(sub) -> None:
    p = sub.add_parser("store", help="list, remove or prune stored compressed models",
                       description="Compressed models are kept in the models store keyed by their "
                       "identity, so a later run or sweep loads them instead of compressing again.")
    p.add_argument("action", choices=("list", "remove", "prune"))
    p.add_argument("keys", nargs="*", help="for remove: key prefixes or recipes")
    p.add_argument("--store", default=None, help="store folder (default: $COMPBENCH_STORE, else "
                   "the user cache dir)")
    p.add_argument("--unused-days", type=_days, default=None,
                   help="prune: also remove models not used for this many days (>= 0)")
    p.add_argument("--dry-run", action="store_true",
                   help="remove, prune: list what would be removed, remove nothing")
    p.set_defaults(func=run)


def _days(text: str) -> float:
    """--unused-days: a number of days >= 0."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got '{text}'") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of days >= 0, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    import datetime

    from tabulate import tabulate

    from compbench.artifacts.store import ModelStore

    store = ModelStore(args.store)
    if args.action == "list":
        entries = store.entries()
        when = lambda t: datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")  # noqa: E731
        print(tabulate([[e.key[:12], e.model, e.recipe, f"{e.size_bytes / 2**20:.1f}", when(e.created_at),
                         when(e.used_at)] for e in entries],
                       ["key", "model", "recipe", "MB on disk", "made", "last used"], tablefmt="github"))
        print(f"{len(entries)} compressed model(s), {sum(e.size_bytes for e in entries) / 2**30:.2f} GiB "
              f"in {store.root}")
    elif args.action == "remove":
        if not args.keys:
            raise CompbenchError("store remove needs KEY prefixes or recipes (see `compbench store list`)")
        entries = store.entries()
        for wanted in args.keys:
            matches = [e for e in entries if e.key.startswith(wanted) or e.recipe == wanted]
            if not matches:
                raise CompbenchError(f"no stored model has key prefix or recipe '{wanted}'")
            for entry in matches:
                if not args.dry_run:
                    store.remove(entry)
                print(f"{'would remove' if args.dry_run else 'removed'} {entry.key[:12]} {entry.model} "
                      f"{entry.recipe}")
    else:
        removed = store.prune(args.unused_days, dry_run=args.dry_run)
        for path, reason in removed:
            print(f"{'would remove' if args.dry_run else 'removed'} {path} ({reason})")
        count = f"{len(removed)} entr{'y' if len(removed) == 1 else 'ies'}"
        print(f"{'would prune' if args.dry_run else 'pruned'} {count} from {store.root}"
              + (" (dry run: nothing removed)" if args.dry_run else ""))
    return 0
