"""Wikipedia text in text8's form, from the enwiki fragment in PyPI's gensim wheel: a real-text stand-in for text8.

text8 was made from a 2006 Wikipedia dump by Matt Mahoney's ``wikifil.pl``: the article text, lower case, each
digit spelled out as a word (``1984`` → ``one nine eight four``), every other character a space, runs of spaces one
space. This script does the same to the prose of the articles ``wikipedia_fragment.articles`` strips of wiki markup
(206 pages of the 2017 dump, 96 articles), in their order in the dump, and writes one line without a newline: a file
``plmu-train task=text8 task.data.path=FILE task.data.expected_characters=null`` reads as it reads text8.

    pip download --no-deps gensim -d /tmp/gensim
    python scripts/wikipedia_as_text8.py /tmp/gensim/gensim-4.3.3-*.whl /tmp/wiki_text8.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wikipedia_fragment import articles

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def as_text8(text: str) -> str:
    """Lower case, digits spelled out, anything but a-z a space, one space between words, none at either end."""
    text = text.lower()
    text = re.sub(r"[0-9]", lambda match: f" {DIGITS[int(match.group())]} ", text)
    text = re.sub(r"[^a-z]+", " ", text)
    return text.strip()


def main(wheel: str, output: str) -> None:
    pieces = [as_text8(text) for _, text in articles(wheel)]
    corpus = " ".join(piece for piece in pieces if piece)
    Path(output).write_text(corpus, encoding="ascii")
    words = corpus.count(" ") + 1
    print(f"{len(pieces)} articles, {len(corpus):,} characters, {words:,} words -> {output}")
    print(f"begins: {corpus[:200]!r}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: python {sys.argv[0]} GENSIM_WHEEL OUTPUT_TEXT")
    main(sys.argv[1], sys.argv[2])
