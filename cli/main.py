"""The `compbench` command line: the parser, built from one module per command, and `main`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings

from compbench.cli import (
    distill,
    eval,
    export,
    finetune,
    gate,
    listings,
    report,
    sensitivity,
    speed,
    store,
    sweep,
)
from compbench.cli.common import Parser
from compbench.errors import CompbenchError

EXAMPLES = """\
examples:
  compbench eval --model smollm2-135m --recipe nf4 --tasks wikitext2_ppl --limit 4
  compbench sweep sweeps/wanda.yaml --jobs 2
  compbench gate --baseline gate/baseline.yaml --sweep gate/sweep.yaml
  compbench eval --model smollm2-135m --recipe fp32 --recipe int8 --recipe magnitude:0.5
  compbench report results/
  compbench speed --model smollm2-135m --recipe fp32 --recipe int8wo --recipe int4
  compbench lm-eval --model compressed --model_args pretrained=smollm2-135m,recipe=nf4 \\
      --tasks wikitext2_ppl --limit 4
  compbench export --model smollm2-135m --recipe int8 exported/smollm2-int8
  compbench eval --recipe gptq:bits=4:group_size=64 --recipe rtn:bits=4 --tasks wikitext2_chunked
  compbench sensitivity --model smollm2-135m --method magnitude:0.5:scope=layer
  compbench finetune --recipe nf4:double_quant=true --dataset kasut_math --max-steps 200
  compbench finetune --recipe nf4 --head sft --mix gsm8k=1.0,commonsense_qa=0.5 --max-steps 500
  compbench distill --teacher smollm2-135m --student-recipe structured:ffn=0.25 --head causal
"""


def quiet_libraries() -> None:
    """Keep library chatter out of the output: bitsandbytes casts, transformers notices,
    torchao's failed loads of its CUDA-only kernels on a CPU machine, torch's deprecation notes
    about the enums torchao registers and about the FX tracing llm-compressor does. Errors
    still show."""
    warnings.filterwarnings("ignore")
    for name in ("transformers", "bitsandbytes", "accelerate", "datasets", "lm_eval", "lm-eval",
                 "torchao", "torch.utils._pytree", "torch.fx._symbolic_trace"):
        logging.getLogger(name).setLevel(logging.ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="compbench",
        description="Compress small language models with a recipe and measure what it costs: "
                    "perplexity and accuracy (lm-eval), size, speed, memory.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in (eval, sweep, report, gate, speed, store, finetune, distill, export, sensitivity):
        command.add_parser(sub)
    listings.add_parsers(sub)
    sub.add_parser("lm-eval", add_help=False,
                   help="the lm_eval CLI with --model compressed and compbench tasks available "
                        "(all lm_eval flags; `compbench lm-eval --help`)")
    return parser


def stop_on_signal(signum: int, frame) -> None:
    """SIGTERM or SIGINT: end every process this one started (run workers, a trained preset's
    training, a local Ray instance), then exit at once. Results and checkpoints are written
    atomically, so what finished is kept and a rerun of the command resumes the rest."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        child.terminate()
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        child.kill()
    print(f"compbench: stopped by {signal.Signals(signum).name}; finished runs are saved, run the "
          "command again to resume", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    handlers = {signum: signal.signal(signum, stop_on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        if argv and argv[0] == "lm-eval":
            from compbench.cli import lm_eval

            quiet_libraries()
            return lm_eval.run(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return 2
        if getattr(args, "data_dir", None):
            from compbench.core.io import set_data_dir

            set_data_dir(args.data_dir)
        quiet_libraries()
        return args.func(args)
    except CompbenchError as exc:
        print(f"compbench: error: {exc}", file=sys.stderr)
        return 2
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
