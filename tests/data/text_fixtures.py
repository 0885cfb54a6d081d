"""Tiny IMDB / QQP / SNLI data sets in the exact layouts of their hub repos, written by the tests.

The files are what ``load_dataset`` reads from the hub: parquet with the hub's column names, arrow types and the
``huggingface`` schema metadata (ClassLabel names), under ``<config>/<split>-00000-of-00001.parquet``. IMDB's train
file is sorted by label, as the hub's is; QQP's test split is unlabelled (−1); SNLI has −1 rows (no gold label).
The texts carry a learnable signal (sentiment words, repeated questions, negated hypotheses).
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq

FILLER = [
    "the",
    "film",
    "story",
    "actor",
    "scene",
    "plot",
    "movie",
    "director",
    "camera",
    "music",
    "script",
    "cast",
    "character",
    "ending",
    "minute",
    "time",
    "way",
    "people",
    "world",
    "life",
    "year",
    "day",
    "man",
    "woman",
    "thing",
    "part",
    "place",
    "case",
    "point",
    "group",
    "number",
    "week",
]
POSITIVE = ["great", "wonderful", "superb", "moving", "brilliant", "delightful"]
NEGATIVE = ["awful", "boring", "dreadful", "tedious", "clumsy", "terrible"]
SUBJECTS = ["a man", "a woman", "two dogs", "the child", "a group of people", "an old man"]
ACTIONS = ["is running", "is sleeping", "plays guitar", "is eating food", "reads a book", "rides a bike"]
PLACES = ["in the park", "at home", "on the beach", "in a kitchen", "near the river"]


def write_parquet(path: Path, columns: dict[str, list], features: datasets.Features) -> Path:
    """One parquet file as the hub stores it: HF features in the schema metadata (ClassLabel as int64)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = datasets.Dataset.from_dict(columns, features=features).data.table
    pq.write_table(table, path)
    return path


def review(rng: np.random.RandomState, label: int, words: int) -> str:
    """A fake review of ``words`` words; sentiment words of its label throughout, "<br /><br />" between parts."""
    pool = POSITIVE if label == 1 else NEGATIVE
    tokens = [
        pool[rng.randint(len(pool))] if rng.rand() < 0.2 else FILLER[rng.randint(len(FILLER))] for _ in range(words)
    ]
    if words > 20:
        tokens.insert(words // 2, "<br /><br />")
    return " ".join(tokens).capitalize() + "."


def imdb_columns(n: int, seed: int, labelled: bool = True, sort: bool = True) -> dict[str, list]:
    """``n`` reviews of 5 to 120 words; labels 0/1 (sorted, as the hub's train file), or −1 (``unsupervised``)."""
    rng = np.random.RandomState(seed)
    labels = np.sort(rng.randint(0, 2, n)) if sort else rng.randint(0, 2, n)
    texts = [review(rng, int(label), int(rng.randint(5, 121))) for label in labels]
    return {"text": texts, "label": [int(label) for label in labels] if labelled else [-1] * n}


IMDB_FEATURES = datasets.Features(
    {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
)


def write_imdb(root: Path, n_train: int = 200, n_test: int = 80, n_unsupervised: int = 40) -> Path:
    """``root/plain_text/{train,test,unsupervised}-00000-of-00001.parquet``, as stanfordnlp/imdb."""
    folder = Path(root) / "plain_text"
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2), ("unsupervised", n_unsupervised, 3)):
        columns = imdb_columns(n, seed, labelled=split != "unsupervised", sort=split == "train")
        write_parquet(folder / f"{split}-00000-of-00001.parquet", columns, IMDB_FEATURES)
    return Path(root)


def question_pairs(n: int, seed: int, labelled: bool = True) -> dict[str, list]:
    """QQP's columns: a duplicate repeats the question reworded, a non-duplicate asks about another topic."""
    rng = np.random.RandomState(seed)
    q1, q2, labels = [], [], []
    for _ in range(n):
        topic, other = rng.choice(FILLER, 2, replace=False)
        label = int(rng.randint(2))
        q1.append(f"What is the best {topic} of all time?")
        q2.append(f"Which {topic} is the best ever?" if label else f"How do I find a good {other}?")
        labels.append(label if labelled else -1)
    return {"question1": q1, "question2": q2, "label": labels, "idx": list(range(n))}


QQP_FEATURES = datasets.Features(
    {
        "question1": datasets.Value("string"),
        "question2": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["not_duplicate", "duplicate"]),
        "idx": datasets.Value("int32"),
    }
)


def write_qqp(root: Path, n_train: int = 300, n_validation: int = 60, n_test: int = 50) -> Path:
    """``root/qqp/{train,validation,test}-00000-of-00001.parquet``, as nyu-mll/glue (test labels −1), next to
    another GLUE config's folder, as in a clone of the whole repo."""
    folder = Path(root) / "qqp"
    for split, n, seed in (("train", n_train, 4), ("validation", n_validation, 5), ("test", n_test, 6)):
        columns = question_pairs(n, seed, labelled=split != "test")
        write_parquet(folder / f"{split}-00000-of-00001.parquet", columns, QQP_FEATURES)
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.Value("int64")})
    write_parquet(Path(root) / "cola" / "train-00000-of-00001.parquet", {"sentence": ["x"], "label": [0]}, features)
    return Path(root)


def inference_pairs(n: int, seed: int, no_gold_every: int = 10) -> dict[str, list]:
    """SNLI's columns; every ``no_gold_every``-th row has label −1 (no gold label), as in the real files."""
    rng = np.random.RandomState(seed)
    premises, hypotheses, labels = [], [], []
    for row in range(n):
        subject, action, place = (rng.choice(pool) for pool in (SUBJECTS, ACTIONS, PLACES))
        label = int(rng.randint(3))
        hypothesis = {0: f"{subject} {action}.", 1: f"{subject} {action} with a friend.", 2: f"Nobody {action}."}
        premises.append(f"{subject.capitalize()} {action} {place}.")
        hypotheses.append(hypothesis[label].capitalize())
        labels.append(-1 if row % no_gold_every == no_gold_every - 1 else label)
    return {"premise": premises, "hypothesis": hypotheses, "label": labels}


SNLI_FEATURES = datasets.Features(
    {
        "premise": datasets.Value("string"),
        "hypothesis": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
    }
)


def write_snli(root: Path, n_train: int = 300, n_validation: int = 50, n_test: int = 40) -> Path:
    """``root/plain_text/{train,validation,test}-00000-of-00001.parquet``, as stanfordnlp/snli (with −1 rows)."""
    folder = Path(root) / "plain_text"
    for split, n, seed in (("train", n_train, 7), ("validation", n_validation, 8), ("test", n_test, 9)):
        write_parquet(folder / f"{split}-00000-of-00001.parquet", inference_pairs(n, seed), SNLI_FEATURES)
    return Path(root)
