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
    p.add_argument("--unused-days", type=float, default=None,
                   help="prune: also remove models not used for this many days")
    p.set_defaults(func=run)


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
                store.remove(entry)
                print(f"removed {entry.key[:12]} {entry.model} {entry.recipe}")
    else:
        removed = store.prune(args.unused_days)
        for path in removed:
            print(f"removed {path}")
        print(f"pruned {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} from {store.root}")
    return 0
