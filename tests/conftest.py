"""Shared fixtures: the real embedded model, the real datasets in ../shared/data, one real sweep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_RECIPES = ["fp32", "int8", "nf4", "fp4", "magnitude:0.25", "magnitude:0.5"]
# the sweep also runs one calibrated pruner and one packed integer quantizer
SWEEP_RECIPES = [*DEMO_RECIPES, "wanda:0.5:nsamples=4:seqlen=256", "rtn:4"]
SWEEP_TASKS = ("wikitext2_ppl", "wikitext2_chunked")
SWEEP_LIMIT = 1  # wikitext2_ppl: article 1 (1,407 tokens); wikitext2_chunked: 1 x 2048 tokens


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs two workers on this machine's two cores) each worker
    computes on one core, and so do the processes it starts: two workers with a thread each
    overlap one's imports, process starts and Python overhead with the other's matmuls, where
    two threads each would fight over the cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def _shared_fixtures(item) -> list[str]:
    """The expensive fixtures a test uses that are built once per session or module: the
    session's sweep, and a test module's own module-scoped fixtures."""
    names = getattr(item, "fixturenames", ())
    shared = {"sweep"} if "sweep" in names else set()
    info = getattr(item, "_fixtureinfo", None)
    for name in names:
        definitions = info.name2fixturedefs.get(name) if info else None
        if definitions and definitions[-1].scope != "function" and definitions[-1].baseid.endswith(".py"):
            shared.add(f"{definitions[-1].baseid}::{name}")
    return sorted(shared)


def _xdist_groups(items) -> dict[int, str]:
    """An xdist group for each test that shares an expensive fixture: tests sharing one (directly
    or through other tests) go to one worker, so each is built once, as in a serial run."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    shared = {id(item): _shared_fixtures(item) for item in items}
    for keys in shared.values():
        for key in keys[1:]:
            parent[root(key)] = root(keys[0])
    return {index: root(keys[0]) for index, keys in shared.items() if keys}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups off the markers
def pytest_collection_modifyitems(items):
    """A test that uses the session's real sweep (minutes, once per session) is heavy: it runs
    in `make test`, not in the fast tier `make check`. Tests sharing an expensive fixture share
    an xdist group (used by `--dist loadgroup`)."""
    groups = _xdist_groups(items)
    for item in items:
        if "sweep" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.heavy)
        if id(item) in groups:
            item.add_marker(pytest.mark.xdist_group(groups[id(item)]))


def _data_dir() -> Path:
    configured = os.environ.get("COMPBENCH_DATA_DIR")
    path = Path(configured) if configured else REPO.parent / "shared" / "data"
    if not (path / "wikitext-2-raw-v1" / "test.jsonl").is_file():
        pytest.exit(f"the real datasets are needed at {path} (set COMPBENCH_DATA_DIR)", 2)
    return path.resolve()


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory):
    """No hub access in tests: local data dir, offline HF clients; compressed models stored in a
    store of the session's own (never the user's)."""
    os.environ["COMPBENCH_DATA_DIR"] = str(_data_dir())
    os.environ["COMPBENCH_STORE"] = str(tmp_path_factory.mktemp("store"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def data_dir(offline_env) -> Path:
    return Path(os.environ["COMPBENCH_DATA_DIR"])


@pytest.fixture(scope="session")
def checkpoint() -> Path:
    """The materialized embedded SmolLM2-135M checkpoint (built once into the cache)."""
    from compbench.model_zoo.embedded import materialize_embedded

    return materialize_embedded()


@pytest.fixture
def fp32_model(checkpoint):
    """A fresh fp32 copy of the embedded model, on the CPU."""
    from compbench.model_zoo import get_preset
    from compbench.model_zoo.loading import load_model

    preset = get_preset("smollm2-135m")
    model, tokenizer = load_model(preset, device="cpu")
    return model


def sweep_spec(recipe: str):
    from compbench.compressors import parse_recipe
    from compbench.evaluation.settings import EvalSettings
    from compbench.orchestration.plan import RunSpec

    return RunSpec("smollm2-135m", parse_recipe(recipe), EvalSettings(SWEEP_TASKS, limit=SWEEP_LIMIT),
                   device="cpu")


@pytest.fixture(scope="session")
def sweep_limit() -> int:
    """Documents per task of the session's sweep (tests that redo one of its runs use it)."""
    return SWEEP_LIMIT


@pytest.fixture(scope="session")
def sweep(tmp_path_factory, checkpoint, offline_env):
    """One real sweep of the demo recipes on the start of the wikitext-2 test split.

    Returns the results folder, the results by recipe, and the RunSpec maker of the sweep.
    """
    from compbench.orchestration.executors import LocalExecutor
    from compbench.orchestration.plan import make_plan
    from compbench.orchestration.runner import run_plan
    from compbench.records.index import load_results

    out = tmp_path_factory.mktemp("sweep")
    # two runs at a time, a core each: a run's process start, imports and compression overlap
    # the other's evaluation
    failed = run_plan(make_plan([sweep_spec(r) for r in SWEEP_RECIPES], out), echo=lambda _: None,
                      executor=LocalExecutor(jobs=2))
    assert not failed
    return out, {r.recipe: r for r in load_results(out)}, sweep_spec


@pytest.fixture(scope="session")
def wikitext_ids(checkpoint, data_dir):
    """The first 256 tokens of the real wikitext-2 test text, as a (1, 256) batch."""
    import json

    from transformers import AutoTokenizer

    lines = (data_dir / "wikitext-2-raw-v1" / "test.jsonl").read_text().splitlines()[:20]
    text = "".join(json.loads(line)["text"] for line in lines)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    return tokenizer(text, return_tensors="pt").input_ids[:, :256]


@pytest.fixture(scope="session")
def tokenizer(checkpoint):
    """The embedded model's tokenizer (calibration text needs it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint)


@pytest.fixture(scope="session")
def context(tokenizer, data_dir):
    """What compressors get in a real run: the tokenizer and compbench's calibration corpora."""
    from compbench.artifacts.build import compression_context

    return compression_context(tokenizer)


@pytest.fixture
def fresh_model(checkpoint):
    """A maker of fresh fp32 copies of the embedded model, for tests that compare several recipes."""
    from compbench.model_zoo import get_preset
    from compbench.model_zoo.loading import load_model

    def make():
        preset = get_preset("smollm2-135m")
        model, _ = load_model(preset, device="cpu")
        return model

    return make


@pytest.fixture(scope="session")
def perplexity():
    """exp(mean token NLL) of a model on a batch of token rows, each row scored on its own."""
    import math

    import torch

    def score(model, ids) -> float:
        with torch.no_grad():
            losses = [float(model(row[None], labels=row[None]).loss) for row in ids]
        return math.exp(sum(losses) / len(losses))

    return score


@pytest.fixture(scope="session")
def gptq_chunks(tokenizer, data_dir):
    """The GPTQ papers' protocol: the test split joined by blank lines, the first 4 x 2048 tokens."""
    import json

    rows = [json.loads(line)["text"] for line in
            (data_dir / "wikitext-2-raw-v1" / "test.jsonl").read_text().splitlines()]
    return tokenizer("\n\n".join(rows), return_tensors="pt").input_ids[:, :4 * 2048].reshape(4, 2048)


@pytest.fixture(scope="session")
def minilm_classifier(tmp_path_factory) -> Path:
    """The embedded encoder with a seeded fresh 2-class head, saved as a plain classifier folder
    (an untrained stand-in for a fine-tuned SST-2 teacher)."""
    import torch

    from compbench.model_zoo.loading import load_model
    from compbench.model_zoo.presets import get_preset

    torch.manual_seed(0)
    model, tokenizer = load_model(get_preset("minilm-l6-v2"), device="cpu", num_labels=2)
    folder = tmp_path_factory.mktemp("classifier") / "minilm-sst2"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def kill_at_checkpoint():
    """Run `compbench ARGV` in a subprocess and SIGKILL it once `folder` holds checkpoint `step`
    (a training run interrupted mid-way, for the resume tests)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    def kill(argv: list[str], folder: Path, step: int = 2) -> None:
        process = subprocess.Popen([sys.executable, "-m", "compbench.cli.main", *argv],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=os.environ.copy())
        state = folder / "checkpoints" / f"checkpoint-{step}" / "compbench-checkpoint.json"  # complete
        deadline = time.time() + 600
        while not state.exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    return kill
