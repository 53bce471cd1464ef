"""`compbench lm-eval`: the stock lm-eval CLI, with the `compressed` model and compbench's tasks
available beside any `--include_path` of the user's (several folders joined with ':').

lm-eval's CLI hands its one `--include_path` string to `TaskManager`, which takes one folder or
a list; so after lm-eval's own parser has read the command line, the include path becomes the
list [compbench's tasks, the user's folders] (the user's, later, override same-named tasks),
and lm-eval runs it. Nothing of lm-eval is replaced: `HarnessCLI` (lm_eval/__main__.py's
parser) parses and executes as in `lm_eval`.
"""

from __future__ import annotations

import os
import sys

from compbench.errors import CompbenchError


def run(argv: list[str]) -> int:
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    import compbench.evaluation.lm_model  # noqa: F401  (registers --model compressed)
    from compbench.evaluation.task_manager import unknown_tasks_message
    from compbench.tasks import TASKS_DIR

    if "--data-dir" in argv:
        from compbench.core.io import set_data_dir

        i = argv.index("--data-dir")
        if i + 1 >= len(argv):
            raise CompbenchError("--data-dir needs a folder")
        set_data_dir(argv[i + 1])
        del argv[i:i + 2]
    setup_logging()
    sys.argv = ["lm-eval", *argv]
    parser = HarnessCLI()
    args = parser.parse_args()
    if hasattr(args, "include_path"):
        from compbench.evaluation.task_manager import check_include_paths

        users = check_include_paths(tuple(args.include_path.split(os.pathsep))) if args.include_path else ()
        args.include_path = [str(TASKS_DIR), *users]
    model_args = getattr(args, "model_args", None) or {}
    if getattr(args, "model", None) == "compressed" and isinstance(model_args, dict):
        from compbench.orchestration.trained import build_presets

        build_presets([str(model_args.get("pretrained", "smollm2-135m"))])
    try:
        parser.execute(args)
    except ValueError as exc:
        if not str(exc).startswith("Tasks not found"):
            raise
        raise CompbenchError(unknown_tasks_message(str(exc).split(": ", 1)[1].split(", "))) from None
    return 0
