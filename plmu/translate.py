"""Translating with a trained translation model and scoring it: what ``plmu-translate`` does, as functions.

    run = plmu.load_run("outputs/iwslt15_en_vi/plmu/...")
    source_vocab, target_vocab, _ = recorded_vocabularies(run.data_info, run.path)
    split = as_split(["a tokenised sentence ."], (source_vocab, target_vocab))      # plmu.data.translation
    translations, speed = translate_split(run.model, split, target_vocab, beam_size=5)
    score(translations, references)      # BLEU of the tokenised text, and sacreBLEU with its signature

Decoding is one token at a time (``Seq2Seq.decode_step``): beam search with GNMT's length penalty, or greedy
(``beam_size=1``); :func:`score` gives the two BLEUs of ``plmu-translate``'s report (its module docstring).
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plmu.errors import ConfigError
from plmu.train.provenance import from_record

if TYPE_CHECKING:  # the data modules import torch: plmu-translate --help must not wait for it
    from plmu.data.seq2seq import Vocabulary

DEFAULT_BEAM = 5
DEFAULT_ALPHA = 0.6


def score(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """Corpus BLEU of tokenised ``hypotheses`` against one reference each (module docstring: the two BLEUs)."""
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    tokenized = BLEU(tokenize="none", force=True)
    tokenized_score = tokenized.corpus_score(hypotheses, [references])
    sacre = BLEU(force=True)  # force: the text is tokenised on purpose (see the module docstring)
    sacre_score = sacre.corpus_score([html.unescape(h) for h in hypotheses], [[html.unescape(r) for r in references]])
    return {
        "bleu_tokenized": round(tokenized_score.score, 2),
        "bleu_tokenized_signature": str(tokenized.get_signature()),
        "bleu_tokenized_detail": str(tokenized_score),
        "sacrebleu": round(sacre_score.score, 2),
        "sacrebleu_signature": str(sacre.get_signature()),
        "sacrebleu_detail": str(sacre_score),
        "sacrebleu_input": "tokenised text, HTML entities unescaped (not detokenised)",
    }


def translate_split(
    model: Any,
    split: Any,
    target_vocab: Any,
    indices: list[int] | None = None,
    batch_size: int = 64,
    beam_size: int = DEFAULT_BEAM,
    length_penalty: float = DEFAULT_ALPHA,
    max_length: int | None = None,
    device: Any = "cpu",
    progress: bool = False,
) -> tuple[list[str], dict[str, float]]:
    """The translations of ``split``'s sentences ``indices`` (default all), in that order, and the speed.

    Sentences are decoded in batches of similar source length (less padding); returns (translations, {seconds,
    sentences_per_second, tokens_per_second} of the decoding alone).
    """
    if beam_size > len(target_vocab):  # a wider beam only repeats hypotheses, at its full cost (issue 16)
        raise ConfigError(
            f"--beam {beam_size} is wider than the target vocabulary ({len(target_vocab)} words): a step can extend a "
            f"hypothesis by at most that many words; use --beam {len(target_vocab)} or less (5 is usual)"
        )
    import torch
    from tqdm import tqdm

    from plmu.models.decode import decode

    indices = list(range(len(split))) if indices is None else list(indices)
    lengths = split.source.lengths()
    order = sorted(indices, key=lambda i: (int(lengths[i]), i))
    chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    found: dict[int, str] = {}
    seconds, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for chunk in tqdm(chunks, desc="translate", unit="batch", file=sys.stderr, disable=not progress):
            batch = {key: value.to(device) for key, value in split.collate(chunk).items()}
            start = time.perf_counter()
            outputs = decode(
                model, batch, target_vocab.bos_id, target_vocab.eos_id, beam_size, length_penalty, max_length,
                target_vocab.pad_id,
            )  # fmt: skip
            seconds += time.perf_counter() - start
            for index, ids in zip(chunk, outputs, strict=True):
                found[index] = " ".join(target_vocab.decode(ids))
                tokens += len(ids) + 1
    speed = {
        "seconds": round(seconds, 3),
        "sentences_per_second": round(len(indices) / seconds, 2) if seconds > 0 else None,
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
    }
    return [found[i] for i in indices], speed


def recorded_vocabularies(
    info: Mapping[str, Any], run_dir: str | Path, data_root: str | Path | None = None
) -> tuple[Vocabulary, Vocabulary, Path]:
    """(source, target vocabulary, their folder) of a trained run, from its data_info.json record ``info``: the
    files it names (``vocab_files``, relative to the run folder), or with ``data_root`` (a data folder moved or on
    another machine) the same files under it: ``<data_root>/<the folder below data_dir>`` for downloaded or
    generated data, ``<data_root>`` itself for a ``task.data.path``. Nothing is downloaded or generated.
    Records written before ``vocab_files`` existed name the folder and the languages (``folder``, ``files``)."""
    from plmu.data.seq2seq import Vocabulary

    files = info.get("files") or {}
    names = [f"vocab.{files.get('source', 'en')}", f"vocab.{files.get('target', 'vi')}"]
    if data_root is not None:
        below = info.get("folder_in_data_dir", _folder_in_data_dir(info))
        folder = Path(data_root).expanduser() / below if below else Path(data_root).expanduser()
    elif info.get("vocab_files"):
        paths = [from_record(info["vocab_files"][side], run_dir) for side in ("source", "target")]
        return Vocabulary.from_file(paths[0]), Vocabulary.from_file(paths[1]), paths[0].parent
    else:
        folder = from_record(info.get("folder"), run_dir) or Path(run_dir)
    return Vocabulary.from_file(folder / names[0]), Vocabulary.from_file(folder / names[1]), folder


def _folder_in_data_dir(info: Mapping[str, Any]) -> str | None:
    """Where an older record's data lay below data_dir: IWSLT's download folder, a generated synthetic task's, or
    (read from task.data.path) nowhere."""
    from plmu.data.translation import FOLDER

    if str(info.get("dataset", "")).startswith("IWSLT"):
        return FOLDER
    if isinstance(info.get("synthetic"), Mapping) and info.get("folder"):  # <data_dir>/synthetic_en_vi/<settings>
        folder = Path(str(info["folder"]))
        return f"{folder.parent.name}/{folder.name}"
    return None


def check_vocabularies(model: Any, source_vocab: Any, target_vocab: Any, folder: str) -> None:
    sizes = (model.source_embedding.vocab_size, model.target_embedding.vocab_size)
    if sizes != (len(source_vocab), len(target_vocab)):
        raise ConfigError(
            f"the vocabularies in {folder} have {len(source_vocab)} and {len(target_vocab)} words, but the model was "
            f"trained with {sizes[0]} and {sizes[1]}: point --data-root at the data the run was trained on"
        )
