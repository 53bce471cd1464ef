"""KASUT Academy math problems: the eight topics and the one fixed 90/10 split that the task,
calibration and fine-tuning all use."""

from __future__ import annotations

TOPICS = (
    "Algebra", "Geometry and Trigonometry", "Calculus and Analysis", "Probability and Statistics",
    "Number Theory", "Combinatorics and Discrete Math", "Linear Algebra",
    "Abstract Algebra and Topology",
)
SPLIT_SEED = 42  # the fixed seed of the 90/10 split: 9170 train / 1019 test of 10,189 rows


def topic_slug(topic: str) -> str:
    """A topic as a metric-name suffix: `Geometry and Trigonometry` -> `geometry_trigonometry`."""
    return topic.lower().replace(" and ", "_").replace(" ", "_")


def topic_choices(doc) -> list[str]:
    """`doc_to_choice` of the task: the topic names, label i being TOPICS[i]."""
    return list(TOPICS)


def kasut_split(rows):
    """The labelled rows (a list of dicts or a `datasets.Dataset`) split 90/10 with the fixed
    seed: (train, test) as `datasets.Dataset`s."""
    import datasets

    table = rows if isinstance(rows, datasets.Dataset) else datasets.Dataset.from_list(rows)
    parts = table.train_test_split(test_size=0.1, seed=SPLIT_SEED, shuffle=True)
    return parts["train"], parts["test"]
