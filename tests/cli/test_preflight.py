"""plmu-train's command line checked before Hydra starts (issue 16): each problem is one line naming the fix."""

import pytest

from plmu.cli.preflight import command_line_problem, malformed_override, unknown_key


@pytest.mark.parametrize(
    ("arguments", "line"),
    [
        (
            ["trainer.max_epoch=3"],
            "unknown key trainer.max_epoch: did you mean trainer.max_epochs or ",
        ),
        (
            ["task=imdb", "model=lstm", "model.ordr=3"],
            "unknown key model.ordr: model has: _target_, embed_dim, pooling, ",
        ),
        (["-m", "task=mackey_glass", "model.thta=3,4"], "unknown key model.thta: did you mean model.theta?"),
        (["model.theta=choice(3,4)", "trainer.optimizer.lrr=1"], "unknown key trainer.optimizer.lrr: did you mean "),
        (["hydra.run.dri=x"], "unknown key hydra.run.dri: did you mean hydra.run.dir?"),
        (["nope=3"], "unknown key nope: the config has: hydra, seed, data_dir, "),
        (["trainer.max_epochs.x=1"], "unknown key trainer.max_epochs.x: trainer.max_epochs is not a section"),
        (["~trainer.bogus"], "Could not delete from config. 'trainer.bogus' does not exist."),
        (["+trainer.max_epochs=3"], "Could not append to config. An item is already at 'trainer.max_epochs'."),
        (["trainer.batch_size={a"], "trainer.batch_size={a: not a valid override (no viable alternative at input"),
        (["trainer.batch_size=[1,2"], "trainer.batch_size=[1,2: not a valid override ("),
        (["model=mamba"], "model=mamba: no such model config; choose one of: "),
    ],
)
def test_each_problem_is_one_line(arguments, line):
    problem = command_line_problem(arguments)
    assert problem is not None and problem.startswith(line), problem
    assert "\n" not in problem


def test_a_typo_among_other_typos_still_gets_its_sections_keys():
    """The suggestion comes from the config groups chosen, not from the (possibly also wrong) other overrides."""
    problem = unknown_key(["task=imdb", "model=lstm", "model.order=4", "task.data.n_series=8"])
    assert problem is not None and problem.startswith("unknown key model.order: model has: ")
    assert "embed_dim" in problem


@pytest.mark.parametrize(
    "arguments",
    [
        ["task=psmnist", "model.order=4", "trainer.max_epochs=1"],
        ["++model.embed_dropout=0.3", "task=imdb", "++trainer.optimizer.fused=true", "+trainer.optimizer.eps=1e-7"],
        ["-m", "task=mackey_glass", "model.order=2,3", "seed=range(0,3)"],
        ["-m", "task=mackey_glass", "model.theta=interval(1,8)"],  # not enumerable: left out, not refused
        ["trainer.batch_size=${nonexist}"],  # unresolved interpolations: plmu reports them once the run starts
        ["hydra.run.dir=outputs/${now:%H}", "seed=7"],
        ["--help"],
        ["--cfg", "job", "model.order=1"],  # Hydra's showing flags: the overrides beside them are checked (issue 27)
    ],
)
def test_good_command_lines_pass(arguments):
    assert command_line_problem(arguments) is None


def test_each_argument_is_parsed_alone():
    assert malformed_override(["seed=1", "model.order=[1,2]", "a={b:1}"]) is None
    assert malformed_override(["seed=1", "x='unclosed"]).startswith("x='unclosed: not a valid override")
