"""The text-classification tasks' declarations: where each one's data lives, what its columns mean, and the paper's
row. A new Hugging Face text task is one :class:`TextTask` here and a short ``conf/task/<name>.yaml`` that names
it (its shared keys: ``conf/task/base/text_classification.yaml``). Light on purpose (no data libraries): the configs
read a task's class count and pairing from here as they compose (``${plmu.text_task:<task>,num_classes}``), and the
report reads the paper's rows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperRow:
    """A task's row in the paper (Chilkuri & Eliasmith 2021): as the README names the task, what it reports, the
    number(s) as text."""

    name: str
    metric: str
    paper: str


@dataclass(frozen=True)
class TextTask:
    """Where a task's data lives and what its columns mean."""

    name: str
    hub_id: str
    config: str
    texts: tuple[str, ...]  # one column (IMDB) or a pair (QQP, SNLI)
    num_classes: int
    train: str  # source split names, as the hub names them
    test: str
    val: str | None  # None: carved from train
    val_size: int  # the default size of the carved validation split
    max_length: int  # the default truncation length, in tokens
    paper: PaperRow | None = None  # the paper's row, for a task the paper reports
    label: str = "label"
    drop_labels: tuple[int, ...] = ()  # rows with these labels are dropped (SNLI's -1: no gold label)
    html_breaks: bool = False  # "<br />" in the texts

    @property
    def pair(self) -> bool:
        """Two texts per example (the model encodes each and classifies the pair)."""
        return len(self.texts) == 2

    @property
    def keys(self) -> dict[str, str]:
        """Text column → batch key: ``inputs`` for one text, ``inputs_a`` / ``inputs_b`` for a pair."""
        if len(self.texts) == 1:
            return {self.texts[0]: "inputs"}
        return {column: f"inputs_{'ab'[i]}" for i, column in enumerate(self.texts)}


TASKS = {
    "imdb": TextTask("imdb", "stanfordnlp/imdb", "plain_text", ("text",), 2, "train", "test", None, 2_500, 512,
                     PaperRow("IMDB", "test accuracy", "93.20% (34M params, LM pre-training)"), html_breaks=True),
    "qqp": TextTask("qqp", "nyu-mll/glue", "qqp", ("question1", "question2"), 2, "train", "validation", None,
                    10_000, 128, PaperRow("QQP", "validation accuracy", "86.95%")),
    "snli": TextTask("snli", "stanfordnlp/snli", "plain_text", ("premise", "hypothesis"), 3, "train", "test",
                     "validation", 0, 128, PaperRow("SNLI", "test accuracy", "78.85%"), drop_labels=(-1,)),
}  # fmt: skip
DATASET_TASKS = {
    "stanfordnlp/imdb": "imdb",
    "imdb": "imdb",
    "glue/qqp": "qqp",
    "stanfordnlp/snli": "snli",
    "snli": "snli",
}


def text_task_fact(name: str, fact: str) -> object:
    """A declaration's ``fact`` (``num_classes``, ``pair``, ...) for the task ``name``: the configs' resolver
    ``${plmu.text_task:<task>,<fact>}``."""
    task = TASKS.get(DATASET_TASKS.get(name, name))
    if task is None:
        raise ValueError(f"no text task {name!r} is declared (plmu/data/text_tasks.py declares {sorted(TASKS)})")
    return getattr(task, fact)
