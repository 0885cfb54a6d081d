"""text8 end to end on a small text of its form: train with the state carried, plmu-eval as an RNN over streams,
plmu-generate from the run."""

import json

import pytest
from conftest import TINY_MACKEY_GLASS, compose_config

from plmu.cli import eval as eval_cli
from plmu.cli import export as export_cli
from plmu.cli import generate as generate_cli
from plmu.cli import translate as translate_cli
from plmu.models.sequence import SequenceModel
from plmu.train.run import train

TEXT = " ".join(["the cat sat on the mat", "a dog ate the bone", "one two three four"] * 60)


def _config(tmp_path, *extra):
    path = tmp_path / "text8.txt"
    path.write_text(TEXT)
    overrides = [
        "task=text8",
        f"task.data.path={path}",
        "task.data.expected_characters=null",
        "task.data.chunk_length=32",
        f"data_dir={tmp_path / 'cache'}",
        "trainer.max_epochs=2",
        "trainer.batch_size=4",
        "logger=none",
        "trainer.progress=false",
        *extra,
    ]
    return compose_config(overrides)


@pytest.mark.parametrize("model", ["plmu", "lstm", "gru"])
def test_text8_trains_with_carried_state_and_evaluates_as_an_rnn(model, tmp_path, capsys):
    # On the CPU: 1e-5 is a float32 CPU claim (on an H100, cuDNN's LSTM, which may use TF32, missed it)
    run = tmp_path / model
    results = train(_config(tmp_path, f"model={model}", "trainer.device=cpu"), run)
    assert results["metric"] == "bpc" and 0 < results["test"] < 5  # log2(27) = 4.75 is a uniform guess
    capsys.readouterr()
    assert eval_cli.main([str(run), "--no-progress", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["value"] == pytest.approx(results["test"], rel=1e-5)  # the same streams, state carried
    assert report["max_relative_difference_recurrent_vs_parallel"] < 1e-5
    assert generate_cli.main([str(run), "--prompt", "the cat", "--length", "40", "--temperature", "0.5"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("the cat") and len(out.out.strip("\n")) == len("the cat") + 40
    assert "characters/s" in out.err


def test_transformer_trains_on_one_chunk_at_a_time_and_generates(tmp_path, capsys):
    run = tmp_path / "transformer"
    results = train(_config(tmp_path, "model=transformer"), run)
    assert 0 < results["test"] < 5
    assert generate_cli.main([str(run), "--length", "10", "--temperature", "0"]) == 0
    assert len(capsys.readouterr().out.strip("\n")) == 11  # the start symbol (a space) and 10 characters


def test_a_transformer_samples_within_its_training_context(tmp_path, capsys, monkeypatch):
    """Trained on chunks of 32 (state reset), it never attends to more than 32 characters while sampling 100."""
    run = tmp_path / "transformer"
    train(_config(tmp_path, "model=transformer", "trainer.max_epochs=1"), run)
    capsys.readouterr()
    cached = []
    real_step = SequenceModel.step

    def step(self, x_t, state, mask_t=None):
        out, state = real_step(self, x_t, state, mask_t)
        cached.append(state.valid.shape[1])  # the key/value cache's length after this step
        return out, state

    monkeypatch.setattr(SequenceModel, "step", step)
    assert generate_cli.main([str(run), "--prompt", "the cat", "--length", "100", "--temperature", "0"]) == 0
    assert len(capsys.readouterr().out.strip("\n")) == len("the cat") + 100
    assert max(cached) == 32 and cached.count(32) > 1  # rebuilt from the last 16 characters when it reached 32


def test_generate_refuses_what_it_cannot_do(tmp_path, capsys):
    run = tmp_path / "plmu"
    train(_config(tmp_path, "trainer.max_epochs=1"), run)
    capsys.readouterr()
    assert generate_cli.main([str(run), "--prompt", "Hello"]) == 2
    assert "does not know: ['H']" in capsys.readouterr().err
    assert generate_cli.main([str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("temperature", ["nan", "inf", "-1", "hot"])
def test_a_temperature_that_is_not_a_finite_number_is_a_usage_error(temperature, capsys):
    """Issue 16: --temperature nan ended in a traceback from torch.multinomial; inf was accepted."""
    with pytest.raises(SystemExit) as exit:
        generate_cli.parse_args(["run", "--temperature", temperature])
    assert exit.value.code == 2
    assert f"--temperature: must be a finite number >= 0, got '{temperature}'" in capsys.readouterr().err


def test_another_tasks_checkpoint_is_named_as_such_by_every_tool(tmp_path, capsys):
    """Issue 16: plmu-generate with a Mackey-Glass --checkpoint ended in a shape traceback, plmu-eval blamed changed
    data, plmu-translate the run folder, and plmu-export wrote the other model over this run's step_best.pt2."""
    text8_run, other = tmp_path / "text8", tmp_path / "mackey_glass"
    train(_config(tmp_path, "trainer.max_epochs=1"), text8_run)
    mackey_glass = [*TINY_MACKEY_GLASS, f"data_dir={tmp_path / 'mg'}", "trainer.max_epochs=1", "logger=none"]
    train(compose_config(mackey_glass), other)
    foreign = str(other / "checkpoints" / "best.pt")
    line = f"--checkpoint {foreign} is from a mackey_glass run, but run folder {text8_run} is a text8 run: give "
    capsys.readouterr()
    for tool, extra in ((generate_cli, []), (eval_cli, ["--no-progress"]), (translate_cli, []), (export_cli, [])):
        assert tool.main([str(text8_run), "--checkpoint", foreign, *extra]) == 2, tool.__name__
        assert line in capsys.readouterr().err, tool.__name__
    assert not list(text8_run.glob("step_*"))
    # a checkpoint of the same task from another run: exported, under a name of its own
    second = tmp_path / "text8_b"
    train(_config(tmp_path, "trainer.max_epochs=1", "seed=1"), second)
    assert export_cli.main([str(text8_run), "--checkpoint", str(second / "checkpoints" / "best.pt")]) == 0
    assert export_cli.main([str(text8_run)]) == 0
    names = sorted(path.name for path in text8_run.glob("step_*.pt2"))
    assert len(names) == 2 and "step_best.pt2" in names and names[0].startswith("step_best-")
