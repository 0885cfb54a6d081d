"""Translation end to end: plmu-train on a synthetic task in the Stanford layout → plmu-translate (BLEU) → plmu-eval."""

import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import assert_parsing_imports_no_torch, compose_config

from plmu.cli import eval as eval_cli
from plmu.cli import translate as translate_cli
from plmu.data.synthetic_translation import write_synthetic
from plmu.errors import DataNotFoundError
from plmu.train.run import train

TINY_LMU = ["model.memory_d=16", "model.order=8", "model.theta=16"]  # the experiment's sizes, a smaller memory


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """The synthetic task (renamed words, each pair swapped) learnt by a 50k-parameter parallel LMU in seconds."""
    root = tmp_path_factory.mktemp("translation")
    data = write_synthetic(root / "data", num_train=1500, num_val=100, num_test=100, vocab=20, max_length=8)
    overrides = ["experiment=iwslt15_en_vi_synthetic", f"task.data.path={data}", f"data_dir={root / 'cache'}",
                 "trainer.max_epochs=5", "logger=none", "trainer.progress=false", *TINY_LMU]  # fmt: skip
    results = train(compose_config(overrides), root / "run")
    return root / "run", results, data


def report(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_train_translate_and_score(trained_run, capsys):
    run, results, _ = trained_run
    assert results["metric"] == "perplexity" and results["test"] < 1.2
    assert translate_cli.main([str(run), "--split", "test", "--no-progress"]) == 0
    beam = report(capsys)
    assert beam["bleu_tokenized"] >= 90 and beam["sentences"] == 100 and beam["beam"] == 5
    assert beam["bleu_tokenized_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:none")
    assert "tok:13a" in beam["sacrebleu_signature"] and (run / "translate_test.json").is_file()
    lines = (run / "translate_test.txt").read_text().splitlines()
    assert len(lines) == 100 and lines[0] == beam["examples"][0]["translation"]
    assert translate_cli.main([str(run), "--split", "test", "--beam", "1", "--no-progress"]) == 0
    assert report(capsys)["bleu_tokenized"] >= 90 and (run / "translate_test_greedy.json").is_file()


def test_stdin_to_stdout_and_the_run_as_an_rnn(trained_run, monkeypatch, capsys, tmp_path):
    run, results, data = trained_run
    # the split's greedy translations, written here: another test's may not be in this process (pytest-xdist)
    assert translate_cli.main([str(run), "--split", "test", "--beam", "1", "--no-progress"]) == 0
    capsys.readouterr()
    sources = (data / "tst2013.en").read_text().splitlines()[:3]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(sources) + "\n"))
    assert translate_cli.main([str(run), "--beam", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == (run / "translate_test_greedy.txt").read_text().splitlines()[:3]
    # the vocabularies come from the files the run's data_info.json names; --data-root: the same files elsewhere
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    monkeypatch.setattr(sys, "stdin", io.StringIO(sources[0] + "\n"))
    assert translate_cli.main([str(run), "--beam", "1", "--data-root", str(moved), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines() == out[:1]
    monkeypatch.setattr(sys, "stdin", io.StringIO(sources[0] + "\n"))
    assert translate_cli.main([str(run), "--data-root", str(tmp_path), "--no-progress"]) == 2
    assert "vocab.en is missing" in error_line(capsys)
    assert eval_cli.main([str(run), "--no-progress"]) == 0  # teacher-forced, the decoder stepped as an RNN
    evaluation = report(capsys)
    assert evaluation["value"] == pytest.approx(results["test"], rel=1e-5)
    assert evaluation["max_relative_difference_recurrent_vs_parallel"] < 1e-5


def test_report_names_and_mistakes_are_one_line(trained_run, tmp_path, capsys):
    run, _, _ = trained_run
    flags = ["--split", "val", "--beam", "3", "--length-penalty", "0", "--limit", "5"]
    args = translate_cli.parse_args([str(run), *flags])
    assert translate_cli.report_name(args, run, run / "checkpoints" / "best.pt") == "translate_val_beam3_lp0_limit5"
    assert translate_cli.main([str(run), "--limit", "3"]) == 2
    assert "--limit needs --split" in error_line(capsys)
    assert translate_cli.main([str(run), "--split", "test", "--data-root", str(tmp_path), "--no-progress"]) == 2
    assert "is missing" in error_line(capsys) and not list(run.glob("*.tmp"))
    assert translate_cli.main([str(tmp_path / "nothing"), "--split", "test"]) == 2
    assert "does not exist" in error_line(capsys)
    assert translate_cli.main([str(run), "--split", "test", "--beam", "100000", "--no-progress"]) == 2
    assert "--beam 100000 is wider than the target vocabulary" in error_line(capsys)  # issue 16: a minute, no word
    with pytest.raises(SystemExit):
        translate_cli.main([str(run), "--beam", "0"])
    assert "--beam: must be a positive integer" in capsys.readouterr().err


def test_an_edited_vocabulary_is_refused_by_translate_and_eval(trained_run, tmp_path, capsys):
    """Issue 16: vocab.vi's lines reversed after training (specials kept first): BLEU fell from 98 to 0.45 and
    plmu-eval's perplexity rose to 8,320, without a word."""
    import shutil

    run, _, data = trained_run
    edited = tmp_path / "edited"
    shutil.copytree(data, edited)
    lines = (edited / "vocab.vi").read_text().splitlines()
    specials = [line for line in lines if line.startswith("<")]
    words = [line for line in lines if not line.startswith("<")]
    (edited / "vocab.vi").write_text("\n".join(specials + words[::-1]) + "\n")
    capsys.readouterr()
    assert translate_cli.main([str(run), "--split", "test", "--data-root", str(edited), "--no-progress"]) == 2
    assert "the test split is not the data this run was trained on" in error_line(capsys)
    assert eval_cli.main([str(run), "--data-root", str(edited), "--no-progress"]) == 2
    assert "the test split is not the data this run was trained on" in error_line(capsys)
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))


def test_iwslt_offline_without_data_fails_in_one_line_before_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cfg = compose_config(["task=iwslt15_en_vi", f"data_dir={tmp_path / 'data'}", "logger=none"])
    with pytest.raises(DataNotFoundError, match=r"IWSLT'15 en-vi is not in .*iwslt15_en_vi .*nlp.stanford.edu") as e:
        train(cfg, tmp_path / "run")
    assert "\n" not in str(e.value) and not list((tmp_path / "run").glob("*"))


def test_plmu_train_quick_on_files_of_the_stanford_layout(tmp_path):
    """The command a user runs, as a subprocess: the task's own model sizes, 3 batches."""
    data = write_synthetic(tmp_path / "fixture", num_train=40, num_val=8, num_test=8, vocab=12, max_length=6)
    command = [sys.executable, "-m", "plmu.cli.train", "task=iwslt15_en_vi", f"task.data.path={data}", "debug=quick",
               "logger=none", f"data_dir={tmp_path / 'cache'}", "trainer.batch_size=8",
               "trainer.progress=false"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    (results,) = (tmp_path / "outputs" / "iwslt15_en_vi" / "plmu").glob("*/results.json")
    assert json.loads(results.read_text())["metric"] == "perplexity"


def test_help_does_not_import_torch():
    assert_parsing_imports_no_torch("translate")
