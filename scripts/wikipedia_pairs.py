"""Two stand-in sentence-pair tasks from real Wikipedia sentences, in the hub layouts of QQP and SNLI.

Not QQP or SNLI: their corpora cannot be downloaded on the project's machine. The sentences are those of
``wikipedia_fragment.py`` (the English Wikipedia fragment in the ``gensim`` wheel; text CC BY-SA 3.0), each kept once
(a sentence seen in an earlier article is dropped). Articles, not sentences, are split (seeded): the test articles
first, then the validation ones, each up to 10 % of the sentences, the rest train; no sentence is in two splits.
Every pair's first sentence ``a`` is an anchor with a successor ``b`` in its article, used once per class:

* ``OUT/qqp/qqp/<split>-00000-of-00001.parquet`` (``nyu-mll/glue``, ``qqp``): question1 = a, question2 = b;
  label 1 ("duplicate") if b is the sentence after a, 0 if b is a sentence of another article; ``idx``. As in GLUE,
  test is unlabelled (-1) and validation is the labelled split that plmu evaluates on.
* ``OUT/snli/plain_text/<split>-00000-of-00001.parquet`` (``stanfordnlp/snli``): premise = a, hypothesis = b;
  label 0 if b is the sentence after a, 1 if b is another sentence of a's article at least two away, 2 if b is from
  another article; plus 1 % extra rows labelled -1 (no gold label, as SNLI's), which plmu drops.

    python scripts/wikipedia_pairs.py /tmp/gensim/gensim-*.whl /tmp/wiki
    plmu-train task=qqp task.data.path=/tmp/wiki/qqp ...      plmu-train task=snli task.data.path=/tmp/wiki/snli ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import datasets
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wikipedia_fragment import articles, sentences

Article = list[str]  # an article's sentences, in order
Pair = tuple[str, str, int]


def load_articles(wheel: str | Path) -> list[Article]:
    """Each article's sentences, without a sentence seen before (in it or an earlier article); articles of fewer
    than 4 sentences are left out (each anchor needs a successor and a sentence two away)."""
    seen: set[str] = set()
    kept = []
    for _, text in articles(wheel):
        unique = []
        for sentence in sentences(text):
            if sentence not in seen:
                seen.add(sentence)
                unique.append(sentence)
        if len(unique) >= 4:
            kept.append(unique)
    return kept


def split_articles(docs: list[Article], seed: int, fraction: float = 0.1) -> dict[str, list[Article]]:
    """Articles in a seeded order: test takes them while under ``fraction`` of all sentences, then validation
    likewise, train the rest."""
    total = sum(map(len, docs))
    splits: dict[str, list[Article]] = {"test": [], "validation": [], "train": []}
    order = iter(np.random.default_rng(seed).permutation(len(docs)))
    for name in ("test", "validation"):
        while sum(map(len, splits[name])) < fraction * total:
            splits[name].append(docs[next(order)])
    splits["train"] = [docs[i] for i in order]
    return splits


def _other(docs: list[Article], article: int, rng: np.random.Generator) -> str:
    """A random sentence of another article of the split (articles drawn by their number of sentences)."""
    sizes = np.array([0 if k == article else len(d) for k, d in enumerate(docs)], dtype=float)
    pick = rng.choice(len(docs), p=sizes / sizes.sum())
    return docs[pick][rng.integers(len(docs[pick]))]


def make_pairs(docs: list[Article], classes: int, rng: np.random.Generator) -> list[Pair]:
    """For each anchor a (every sentence with a successor): one pair of each class, shuffled. ``classes`` 2:
    (a, next, 1), (a, another article's, 0); 3: (a, next, 0), (a, same article, two or more away, 1), (a, another
    article's, 2)."""
    pairs: list[Pair] = []
    for k, doc in enumerate(docs):
        for i in range(len(doc) - 1):
            other = _other(docs, k, rng)
            if classes == 2:
                pairs += [(doc[i], doc[i + 1], 1), (doc[i], other, 0)]
            else:
                far = [j for j in range(len(doc)) if abs(j - i) >= 2]
                pairs += [(doc[i], doc[i + 1], 0), (doc[i], doc[far[rng.integers(len(far))]], 1), (doc[i], other, 2)]
    return [pairs[i] for i in rng.permutation(len(pairs))]


def no_gold_rows(docs: list[Article], count: int, rng: np.random.Generator) -> list[Pair]:
    """``count`` pairs of two random sentences of the split, labelled -1 (SNLI's "no gold label")."""
    flat = [sentence for doc in docs for sentence in doc]
    return [(flat[rng.integers(len(flat))], flat[rng.integers(len(flat))], -1) for _ in range(count)]


def write(pairs: list[Pair], path: Path, columns: tuple[str, str], names: list[str], idx: bool) -> None:
    """``pairs`` as a parquet file with the hub's columns and features."""
    features = {columns[0]: datasets.Value("string"), columns[1]: datasets.Value("string")}
    features["label"] = datasets.ClassLabel(names=names)
    data: dict[str, list] = {columns[0]: [p[0] for p in pairs], columns[1]: [p[1] for p in pairs]}
    data["label"] = [p[2] for p in pairs]
    if idx:
        features["idx"] = datasets.Value("int32")
        data["idx"] = list(range(len(pairs)))
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(data, features=datasets.Features(features)).to_parquet(str(path))


def balance(labels: list[int]) -> str:
    """Class shares, e.g. ``0: 50.0%, 1: 50.0%``."""
    values, counts = np.unique(labels, return_counts=True)
    return ", ".join(f"{v}: {c / len(labels):.1%}" for v, c in zip(values, counts, strict=True))


def main(wheel: str, out: str, seed: int = 0) -> None:
    """Write both tasks under ``out`` and print their sizes and class balance."""
    datasets.disable_progress_bars()
    splits = split_articles(load_articles(wheel), seed)
    rng = np.random.default_rng(seed)
    for name, docs in splits.items():
        print(f"{name}: {len(docs)} articles, {sum(map(len, docs))} sentences")
    for split, docs in splits.items():
        qqp = make_pairs(docs, 2, rng)
        if split == "test":  # GLUE's test labels are hidden
            qqp = [(a, b, -1) for a, b, _ in qqp]
        write(qqp, Path(out) / "qqp" / "qqp" / f"{split}-00000-of-00001.parquet", ("question1", "question2"),
              ["not_duplicate", "duplicate"], idx=True)  # fmt: skip
        print(f"qqp {split}: {len(qqp)} pairs, labels {balance([p[2] for p in qqp])}")
    for split, docs in splits.items():
        snli = make_pairs(docs, 3, rng)
        snli += no_gold_rows(docs, round(0.01 * len(snli)), rng)
        snli = [snli[i] for i in rng.permutation(len(snli))]
        write(snli, Path(out) / "snli" / "plain_text" / f"{split}-00000-of-00001.parquet", ("premise", "hypothesis"),
              ["entailment", "neutral", "contradiction"], idx=False)  # fmt: skip
        print(f"snli {split}: {len(snli)} pairs, labels {balance([p[2] for p in snli])}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
