"""The README's Python examples run as written, so the README cannot drift from the code."""

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_a_python_example():
    assert python_blocks()


def test_readme_python_blocks_run(capsys):
    for block in python_blocks():
        exec(compile(block, str(README), "exec"), {})
    assert capsys.readouterr().out.strip().splitlines()[-1] == "True"


RUN_PLACEHOLDER = "outputs/mackey_glass/plmu/<time>"


def trained_run_blocks() -> list[str]:
    """The ``py`` blocks that use a trained run (load_run, the Hub, the exported step), by its placeholder."""
    blocks = re.findall(r"```py\n(.*?)```", README.read_text(), flags=re.S)
    return [block for block in blocks if RUN_PLACEHOLDER in block]


def test_readme_snippets_for_a_trained_run_run_on_one(tmp_path, monkeypatch, capsys):
    # A newcomer's walk after training: load it in Python, save it for the Hub and load it back, load the exported
    # step with torch alone. Each block runs as written on a tiny Mackey-Glass run, the placeholder replaced by its
    # folder; only push_to_hub (the network, an account) is left out.
    from conftest import TINY_MACKEY_GLASS, compose_config

    from plmu.cli import export
    from plmu.train.run import train

    run = tmp_path / "outputs" / "mackey_glass" / "plmu" / "run"
    train(compose_config([*TINY_MACKEY_GLASS, "trainer.max_epochs=1", f"data_dir={tmp_path / 'data'}"]), run)
    assert export.main([str(run)]) == 0 and (run / "step_best.pt2").is_file()
    capsys.readouterr()
    blocks = trained_run_blocks()
    assert len(blocks) == 3, "the README's load_run, Hub and plmu-export snippets"
    monkeypatch.chdir(tmp_path)  # the Hub snippet saves into a folder of the working directory
    for block in blocks:
        code = "\n".join(line for line in block.splitlines() if "push_to_hub" not in line)
        exec(compile(code.replace(RUN_PLACEHOLDER, str(run)), str(README), "exec"), {})
    assert (tmp_path / "mackey-glass-plmu" / "model.safetensors").is_file()


def test_plmu_export_help_names_the_file_it_stores_the_signature_in():
    from plmu import export as exported
    from plmu.cli.export import LOAD_SNIPPET

    assert f'"{exported.METADATA_FILE}"' in LOAD_SNIPPET and f'"{exported.METADATA_FILE}"' in README.read_text()


ROOT = README.parent


def shell_blocks(markdown: str) -> list[str]:
    """The fenced blocks marked bash/sh/shell/console or unmarked."""
    blocks, current = [], None
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            if current is None:
                language = line.strip().strip("`").strip()
                current = [] if language in ("", "bash", "sh", "shell", "console") else ["<other>"]
            else:
                if current[:1] != ["<other>"]:
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def documented_train_commands() -> list[tuple[str, list[str]]]:
    """Every ``plmu-train`` command in the shell blocks of the README and the experiments' READMEs, as (where,
    overrides); arguments holding shell variables or ``<placeholders>`` are left out (they are the user's)."""
    commands = []
    for path in [README, *sorted((ROOT / "experiments").glob("**/README.md"))]:
        for block in shell_blocks(path.read_text()):
            joined = re.sub(r"\\\n\s*", " ", block)
            for number, line in enumerate(joined.splitlines(), start=1):
                for match in re.finditer(r"(?:^|[\s;&|(])plmu-train\s+([^;|&#\n]*)", line):
                    arguments = [
                        argument
                        for argument in shlex.split(match.group(1))
                        if argument in ("-m", "--multirun")
                        or ("=" in argument and "<" not in argument and "$" not in argument.replace("${now:", ""))
                    ]
                    if arguments:
                        commands.append((f"{path.relative_to(ROOT)}:{number}", arguments))
    return commands


def test_there_are_documented_commands():
    assert len(documented_train_commands()) >= 40


@pytest.mark.parametrize(("where", "arguments"), documented_train_commands(), ids=lambda value: str(value)[:60])
def test_documented_train_commands_compose(where, arguments):
    """Issue 16: a config key that moved or a `+` for a key the config now has (Hydra refuses both) shows up here."""
    from plmu.cli.preflight import command_line_problem

    assert command_line_problem(arguments) is None, f"{where}: plmu-train {' '.join(arguments)}"
