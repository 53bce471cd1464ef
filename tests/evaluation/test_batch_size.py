"""`batch_size=auto` on a CPU: sized from what a row costs, never above the free memory's share,
and recorded in the results."""

import json
import subprocess
import sys

import pytest

from compbench.evaluation.batch_size import MEMORY_SHARE, cpu_batch_size, row_bytes

# A tiny decoder with SmolLM2's vocabulary: its logits dominate a pass, as in the real model,
# and it loads in no time, so the process's peak memory is the pass's own.
# The pass's memory is the rise of this process's peak RSS as /proc/self/status gives it
# (VmHWM: the peak of this process image). getrusage's ru_maxrss would not do: Linux carries a
# process's peak across exec, so a child of a pytest process holding models starts at that peak
# and a pass below it reads as 0.
MEASURE = r"""
import json, sys
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

def peak_rss_bytes():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2)
model = LlamaForCausalLM(config).eval()
rows, tokens = int(sys.argv[1]), int(sys.argv[2])
ids = torch.randint(0, config.vocab_size, (rows, tokens))
before = peak_rss_bytes()
with torch.no_grad():
    logprobs = F.log_softmax(model(ids).logits, dim=-1)  # what lm-eval's HFLM does per batch
print(json.dumps({"bytes": peak_rss_bytes() - before, "config": config.to_dict()}))
"""


def test_the_estimate_covers_a_real_pass_without_gross_excess():
    rows, tokens = 8, 512
    out = subprocess.run([sys.executable, "-c", MEASURE, str(rows), str(tokens)],
                         capture_output=True, text=True, check=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    from transformers import LlamaConfig

    estimate = rows * row_bytes(LlamaConfig(**measured["config"]), tokens, dtype_bytes=4)
    assert measured["bytes"] <= estimate <= 2 * measured["bytes"], (measured["bytes"], estimate)


def test_the_size_is_what_fits_in_the_share_of_free_memory(checkpoint):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(checkpoint)
    per_row = row_bytes(config, 2048, dtype_bytes=4)
    assert per_row > 2048 * config.vocab_size * 4  # at least the float32 logits
    free = 10 * per_row / MEMORY_SHARE
    assert cpu_batch_size(config, 2048, 4, max_batch_size=64, available_bytes=free) == 10
    assert cpu_batch_size(config, 2048, 4, max_batch_size=8, available_bytes=free) == 8
    assert cpu_batch_size(config, 2048, 4, max_batch_size=64, available_bytes=per_row) == 1
    # bfloat16 logits are smaller: more rows fit
    assert cpu_batch_size(config, 2048, 2, max_batch_size=64, available_bytes=free) > 10


@pytest.mark.heavy
def test_an_auto_run_records_the_sizes_it_chose(checkpoint, data_dir, tmp_path):
    from compbench.cli.main import main

    assert main(["eval", "--recipe", "fp32", "--tasks", "commonsense_qa,wikitext2_ppl", "--limit", "1",
                 "--max-length", "256", "--batch-size", "auto", "--output-dir", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["settings"]["batch_size"] == "auto"
    sizes = record["model"]["batch_sizes"]
    assert sizes and all(isinstance(s, int) and 1 <= s <= 64 for s in sizes)
    assert len(sizes) == 2  # one for the short questions, one for the 256-token windows
