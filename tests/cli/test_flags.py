"""The flags the tools share are declared once (plmu/cli/flags.py) and read the same in each (issue 17)."""

import pytest

from plmu.cli import eval as eval_cli
from plmu.cli import export as export_cli
from plmu.cli import generate as generate_cli
from plmu.cli import translate as translate_cli

SHARED = ["--checkpoint", "last", "--batch-size", "4", "--data-root", "d", "--no-progress", "--output", "o"]


@pytest.mark.parametrize("tool", [eval_cli, translate_cli])
def test_the_tools_that_read_a_split_take_every_shared_flag(tool):
    args = tool.parse_args(["run", *SHARED, "--device", "cpu"])
    assert (args.run_dir, args.checkpoint, args.batch_size, args.data_root, args.no_progress, args.output) == (
        "run",
        "last",
        4,
        "d",
        True,
        "o",
    )
    assert args.device == "cpu" and tool.parse_args(["run"]).device == "auto"


@pytest.mark.parametrize("tool", [eval_cli, translate_cli, generate_cli, export_cli])
def test_a_bad_shared_flag_is_the_same_usage_error_everywhere(tool, capsys):
    with pytest.raises(SystemExit) as exit:
        tool.parse_args(["run", "--checkpoint"])  # the flag without its value
    assert exit.value.code == 2 and "--checkpoint: expected one argument" in capsys.readouterr().err
    if tool in (eval_cli, translate_cli):
        with pytest.raises(SystemExit):
            tool.parse_args(["run", "--batch-size", "0"])
        assert "--batch-size: must be a positive integer (1, 2, ...), got '0'" in capsys.readouterr().err


def test_generate_runs_on_the_cpu_by_default_and_export_has_no_device():
    assert generate_cli.parse_args(["run"]).device == "cpu"
    assert not hasattr(export_cli.parse_args(["run"]), "device")
