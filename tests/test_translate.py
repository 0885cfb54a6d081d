"""plmu.translate: BLEU scoring, a split's translations in order, the run's recorded vocabularies."""

import shutil

import pytest

from plmu.data.seq2seq import as_split
from plmu.data.synthetic_translation import synthetic_en_vi
from plmu.errors import ConfigError
from plmu.models.seq2seq import translation_model
from plmu.translate import check_vocabularies, recorded_vocabularies, score, translate_split


def test_score_gives_both_bleus_with_their_signatures():
    perfect = score(["the cat sat on the mat ."], ["the cat sat on the mat ."])
    assert perfect["bleu_tokenized"] == 100.0 and perfect["sacrebleu"] == 100.0
    assert "tok:none" in perfect["bleu_tokenized_signature"] and "tok:13a" in perfect["sacrebleu_signature"]
    wrong = score(["a dog ran off the road today"], ["the cat sat on the mat ."])
    assert wrong["bleu_tokenized"] < 10
    # HTML entities are unescaped for sacreBLEU only: the tokenised BLEU sees the Stanford files' text as it is
    escaped = score(["it &apos;s fine , really ."], ["it 's fine , really ."])
    assert escaped["sacrebleu"] == 100.0 and escaped["bleu_tokenized"] < 100.0
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        score(["a", "b"], ["a"])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, synthetic_en_vi(root, num_train=30, num_val=4, num_test=4, vocab=10, max_length=6, pad_multiple=1)


def test_translations_come_back_in_the_splits_order(synthetic):
    _, data = synthetic
    model = translation_model(len(data.source_vocab), len(data.target_vocab), "lstm", 8, 8, 1).eval()
    lines = ["w1 w2 w3", "w4", "w2 w2 w5 w6 w7", "w3 w1"]
    split = as_split(lines, data)
    together, speed = translate_split(model, split, data.target_vocab, beam_size=1, batch_size=4, max_length=5)
    alone = [translate_split(model, split, data.target_vocab, [i], beam_size=1, max_length=5)[0][0] for i in range(4)]
    assert together == alone  # batching by length must not reorder the output
    assert speed["sentences_per_second"] > 0
    assert translate_split(model, split, data.target_vocab, [2, 0], beam_size=1, max_length=5)[0] == [
        alone[2],
        alone[0],
    ]
    with pytest.raises(ConfigError, match=r"--beam 100 is wider than the target vocabulary"):
        translate_split(model, split, data.target_vocab, beam_size=100)


def test_recorded_vocabularies_are_the_files_the_record_names(synthetic, tmp_path):
    root, data = synthetic
    (folder,) = (root / "synthetic_en_vi").iterdir()
    source, target, found = recorded_vocabularies(data.info, tmp_path / "run")
    assert found == folder.resolve() and len(source) == len(target) == 14
    assert target.digest() == data.target_vocab.digest()
    # ... or the same files below another data folder (--data-root: the data moved), also for an older record
    moved = tmp_path / "moved"
    shutil.copytree(root / "synthetic_en_vi", moved / "synthetic_en_vi")
    older = {key: value for key, value in data.info.items() if key not in ("vocab_files", "folder_in_data_dir")}
    for info in (data.info, older):
        source, _, found = recorded_vocabularies(info, tmp_path / "run", data_root=moved)
        assert found == moved / "synthetic_en_vi" / folder.name and source.words == data.source_vocab.words


def test_vocabularies_of_other_sizes_are_refused(synthetic):
    _, data = synthetic
    model = translation_model(len(data.source_vocab) + 1, len(data.target_vocab), "lstm", 8, 8, 1)
    check_vocabularies(translation_model(len(data.source_vocab), len(data.target_vocab), "lstm", 8, 8, 1),
                       data.source_vocab, data.target_vocab, "here")  # fmt: skip
    with pytest.raises(ConfigError, match=r"^the vocabularies in here have 14 and 14 words, but the model was trained"):
        check_vocabularies(model, data.source_vocab, data.target_vocab, "here")
