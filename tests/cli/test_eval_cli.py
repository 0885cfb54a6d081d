import json

import pytest
from conftest import TINY_MACKEY_GLASS, compose_config

from plmu.cli import eval as eval_cli
from plmu.train.run import train


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    cfg = compose_config([*TINY_MACKEY_GLASS, f"data_dir={root / 'data'}", "trainer.max_epochs=2"])
    results = train(cfg, root / "run")
    return root / "run", results


@pytest.mark.parametrize("mode", ["recurrent", "parallel"])
def test_eval_reproduces_the_test_metric(trained_run, mode, capsys):
    run_dir, results = trained_run
    assert eval_cli.main([str(run_dir), "--mode", mode]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metric"] == "nrmse" and report["samples"] == 4
    assert report["value"] == pytest.approx(results["test"], rel=1e-5)
    assert report["max_abs_difference_recurrent_vs_parallel"] < 1e-5  # float32 rounding
    assert report["max_relative_difference_recurrent_vs_parallel"] < 1e-5
    assert report["samples_per_second"] > 0


def test_eval_last_checkpoint_and_validation_split(trained_run, capsys):
    run_dir, _ = trained_run
    assert eval_cli.main([str(run_dir), "--checkpoint", "last", "--split", "val", "--mode", "parallel"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "val"


def test_corrupt_checkpoint_is_a_clear_error(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    broken = tmp_path / "broken.pt"
    broken.write_bytes((run_dir / "checkpoints" / "best.pt").read_bytes()[:500])
    assert eval_cli.main([str(run_dir), "--checkpoint", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"plmu-eval: error: checkpoint {broken} is unreadable")
    assert "Traceback" not in err


def test_data_root_points_at_the_data(trained_run, capsys):
    run_dir, results = trained_run
    data_dir = run_dir.parent / "data" / "mackey_glass"
    assert eval_cli.main([str(run_dir), "--mode", "parallel", "--data-root", str(data_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == pytest.approx(results["test"], rel=1e-5)
