"""Real English Wikipedia prose from a fragment of a dump that a PyPI package ships, as plain text.

The ``gensim`` wheel (LGPL-2.1; we only read one of its test files, we do not install or import it) holds
``gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``: 206 pages of the
2017 English Wikipedia dump (text CC BY-SA 3.0), about 100 of them redirects. This module reads it with the standard
library only (zipfile, bz2, xml.etree) and strips the wiki markup with regular expressions, keeping case and
punctuation: templates ``{{...}}``, tables ``{|...|}``, ``<ref>``s, comments and other tags, files and categories
go; ``[[target|text]]`` becomes ``text``; bold / italic quotes, headings and list markers go; HTML entities are
decoded. Paragraphs (and list items) are lines of the result.

    pip download --no-deps gensim -d /tmp/gensim
    python scripts/wikipedia_fragment.py /tmp/gensim/gensim-*.whl         # statistics and a sample

API: ``articles(path)`` yields ``(title, plain text)``; ``sentences(text)`` splits prose into sentences.
"""

from __future__ import annotations

import bz2
import html
import io
import re
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path

MEMBER = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
DROPPED_LINKS = ("file", "image", "media", "category")  # link namespaces whose text is not prose
END_SECTIONS = re.compile(
    r"^==+\s*(See also|References|Notes|Footnotes|Citations|External links|Further reading|Bibliography|Sources)"
    r"\s*==+\s*$",
    re.MULTILINE | re.IGNORECASE,
)  # what follows these headings is lists of links and citations, not prose
ABBREVIATIONS = re.compile(  # words whose final period does not end a sentence (compared lower-cased)
    r"mrs?|ms|dr|prof|st|[js]r|vs|etc|e\.g|i\.e|cf|ca?|nos?|vol|pp?|fig|gen|col|lt|gov|sen|rep|inc|ltd|co|corp|"
    r"jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec|u\.s|u\.k|a\.d|b\.c|approx|est|op|al|[a-z]|([a-z]\.)+[a-z]"
)


def read_dump(path: str | Path) -> bytes:
    """The dump's XML: from the gensim wheel (.whl), from the .bz2 member itself, or from an .xml file."""
    path = Path(path)
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            return bz2.decompress(wheel.read(MEMBER))
    data = path.read_bytes()
    return bz2.decompress(data) if data[:3] == b"BZh" else data


def pages(path: str | Path) -> Iterator[tuple[str, str]]:
    """``(title, wikitext)`` of every main-namespace page that is not a redirect, in dump order."""
    fields: dict[str, str] = {}
    redirect = False
    for _, element in ET.iterparse(io.BytesIO(read_dump(path)), events=("end",)):
        tag = element.tag.rsplit("}", 1)[-1]
        if tag in ("title", "ns", "text"):
            fields[tag] = element.text or ""
        elif tag == "redirect":
            redirect = True
        elif tag == "page":
            text = fields.get("text", "")
            if fields.get("ns") == "0" and not redirect and not re.match(r"\s*#redirect", text, re.IGNORECASE):
                yield fields.get("title", ""), text
            fields, redirect = {}, False
            element.clear()


def _innermost(pattern: re.Pattern[str], replace: str | object, text: str) -> str:
    """Apply ``pattern`` until nothing changes: it matches innermost constructs, so nesting unwinds."""
    while True:
        new = pattern.sub(replace, text)  # type: ignore[arg-type]
        if new == text:
            return text
        text = new


def _link(match: re.Match[str]) -> str:
    """``[[target|text]]`` → text; files, categories and interlanguage links → nothing."""
    target, _, label = match.group(1).partition("|")
    prefix = target.strip().lstrip(":").split(":", 1)[0].strip().lower() if ":" in target else ""
    if prefix in DROPPED_LINKS or (not target.startswith(":") and re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?", prefix)):
        return ""
    shown = label.rsplit("|", 1)[-1] if label else target.lstrip(":")  # the last field is the text shown
    return shown + match.group(2)  # [[link]]s → links: the trail is part of the word


def clean_wikitext(text: str) -> str:
    """Plain text of an article's wikitext: one paragraph or list item a line, case and punctuation kept."""
    text = END_SECTIONS.split(text, maxsplit=1)[0]
    text = re.sub(r"<!--.*?(-->|$)", "", text, flags=re.DOTALL)
    text = re.sub(r"<ref[^>]*/>|<ref[^>]*>.*?</ref\s*>", "", text, flags=re.DOTALL | re.IGNORECASE)
    tags = "math|chem|gallery|timeline|imagemap|score|syntaxhighlight|source|pre|hiero|graph|mapframe"
    text = re.sub(rf"<({tags})\b[^>]*>.*?</\1\s*>", "", text, flags=re.DOTALL | re.IGNORECASE)
    text = re.sub(r"<br\s*/?>", " ", text, flags=re.IGNORECASE)
    text = re.sub(r"</?[a-zA-Z][^<>]*>", "", text)  # other tags (<small>, <sub>, <nowiki>, ...): content kept
    text = _innermost(re.compile(r"\{\{[^{}]*\}\}"), "", text)  # templates, nested ones from the inside out
    text = _innermost(re.compile(r"\{\|(?:(?!\{\|).)*?\n\s*\|\}", re.DOTALL), "", text)  # tables, likewise
    links = re.compile(r"\[\[((?:[^\[\]]|\[(?!\[)|\](?!\]))*)\]\]([a-z]*)")  # single brackets may occur inside
    text = _innermost(links, _link, text)  # inner links first: those in file captions
    text = re.sub(r"\[(?:https?:|ftp:)?//[^\s\]]+\s*([^\]]*)\]", r"\1", text)  # [url label] → label
    text = re.sub(r"https?://\S+", "", text)
    text = re.sub(r"'{2,}", "", text)  # '''bold''', ''italic''
    text = re.sub(r"__[A-Z]+__", "", text)  # __TOC__ and other magic words
    text = html.unescape(html.unescape(text))  # &amp;nbsp; in the dump is &nbsp; after XML parsing
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if re.match(r"=+.*=+$", line) or line[:1] in ("|", "!", "{", "}"):  # headings, table residue
            continue
        line = re.sub(r"^[*#:;]+\s*", "", line)  # list and indent markers
        line = re.sub(r"\(\s*[,;:]?\s*\)", "", line)  # brackets emptied by removed templates
        line = re.sub(r"\s+([,.;:!?)])", r"\1", re.sub(r"[\s\u00a0]+", " ", line)).replace("( ", "(").strip()
        if line:
            lines.append(line)
    return "\n".join(lines)


def articles(path: str | Path, min_chars: int = 1_000) -> Iterator[tuple[str, str]]:
    """``(title, plain text)`` of each article of the dump: no redirects, disambiguation pages or pages whose
    plain text is under ``min_chars`` characters."""
    for title, wikitext in pages(path):
        if "(disambiguation)" in title or re.search(r"\{\{\s*(disambig|dab\b|hndis|geodis)", wikitext, re.I):
            continue
        text = clean_wikitext(wikitext)
        if len(text) >= min_chars:
            yield title, text


def _split_line(line: str) -> list[str]:
    """One paragraph split after ``.``, ``!`` or ``?`` (and closing quotes or brackets) followed by a capital,
    a digit or an opening quote, unless the period ends an abbreviation or an initial."""
    parts, start = [], 0
    for match in re.finditer(r"[.!?][\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])", line):
        word = line[start : match.start()].rsplit(None, 1)[-1] if line[start : match.start()].strip() else ""
        word = word.lstrip("(\"'").lower()
        if line[match.start()] == "." and ABBREVIATIONS.fullmatch(word):
            continue
        parts.append(line[start : match.end()].strip())
        start = match.end()
    parts.append(line[start:].strip())
    return parts


def sentences(text: str, min_words: int = 5, max_words: int = 80) -> list[str]:
    """The sentences of plain ``text`` (lines as from ``clean_wikitext``), in order, that look like prose: they
    start with a capital, a digit or a quote, end with ``.``, ``!`` or ``?`` (a closing quote or bracket may
    follow) and have ``min_words`` to ``max_words`` words. List items that are not sentences drop out."""
    kept = []
    for line in text.splitlines():
        for sentence in _split_line(line):
            words = len(sentence.split())
            prose = re.match(r"[\"'“‘(]?[A-Z0-9]", sentence) and re.search(r"[.!?][\"'”’)]?$", sentence)
            if prose and min_words <= words <= max_words:
                kept.append(sentence)
    return kept


def main(path: str) -> None:
    """Print how many pages, articles, words and sentences the fragment holds, and a sample."""
    all_pages = sum(1 for _ in pages(path))
    found = list(articles(path))
    split = [sentences(text) for _, text in found]
    words = sum(len(text.split()) for _, text in found)
    count = sum(map(len, split))
    print(f"{all_pages} main-namespace pages that are not redirects; {len(found)} articles of 1,000+ characters")
    print(f"{words:,} words, {sum(len(t) for _, t in found):,} characters of plain text")
    print(f"{count:,} sentences ({sum(len(s.split()) for ss in split for s in ss) / count:.1f} words on average)")
    print(f"sentences per article: min {min(map(len, split))}, max {max(map(len, split))}")
    title, text = found[0]
    print(f"\n{title}: {text[:600]}...\n\nits first sentences:", *sentences(text)[:3], sep="\n")


if __name__ == "__main__":
    main(sys.argv[1])
