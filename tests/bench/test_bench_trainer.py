"""plmu-bench --trainer times a psMNIST epoch through the trainer and through the bare step (tiny sizes: seconds)."""

import re

from plmu.bench import main


def test_trainer_report_measures_both_and_states_the_overhead(capsys):
    assert main(["--trainer", "--quick"]) == 0
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^\| ([^|]+?) \| (\d+\.\d\d) ± \d+\.\d\d \|", out, flags=re.M))
    seconds = {label: float(value) for label, value in rows.items()}
    bare = seconds["bare loop: forward, cross-entropy, backward, Adam"]
    whole = seconds["trainer, whole epoch"]
    parts = [seconds[k] for k in seconds if k.startswith("of which: ") and "drawing" not in k]
    assert len(parts) == 3 and bare > 0 and min(seconds.values()) >= 0
    assert abs(whole - sum(parts)) < 0.1 * whole  # medians of parts: nearly additive
    assert re.search(r"Trainer overhead on the training part: [+-]\d+\.\d% of the bare loop \((within|ABOVE)", out)


def test_the_benchmark_leaves_the_trainers_log_level_as_it_found_it():
    """It quiets the trainer's epoch lines while it times: a later run in the same process must log them again."""
    import argparse
    import logging

    from plmu.bench import trainer as bench_trainer

    log = logging.getLogger("plmu.train.trainer")
    before = log.level
    args = argparse.Namespace(batch=3, steps=20, order=8, theta=10.0, hidden=4, quick=True)
    bench_trainer.report(args, repeats=1)
    assert log.level == before
