"""lm-eval task YAMLs for compbench, and where their data comes from."""

import logging
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
_OUR_TASKS = tuple(p.stem for p in TASKS_DIR.glob("[!_]*.yaml"))


def _not_our_notice(record: logging.LogRecord) -> bool:
    """Drops two lm-eval notices about these tasks that are by design: that a YAML replaces
    lm-eval's same-named task (commonsense_qa, logiqa, sst2; each YAML says how its prompt
    relates), and the `--metadata` hint lm-eval gives for every task with a custom loader
    (ours read local JSONL copies)."""
    message = str(record.msg)
    args = record.args if isinstance(record.args, tuple) else ()
    if message.startswith("Task '%s' from %s overrides") and len(args) == 3:
        return not str(args[1]).startswith(str(TASKS_DIR))
    task, _, rest = message.partition(": ")
    return not (rest.startswith("Custom kwargs can be passed") and task.startswith(_OUR_TASKS))


for _name in ("lm_eval.tasks._index", "lm_eval.api.task"):
    logging.getLogger(_name).addFilter(_not_our_notice)
