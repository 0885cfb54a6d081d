"""plmu-bench --trainer times a psMNIST epoch through the trainer and through the bare step (tiny sizes: seconds)."""

import os
import re

from plmu.bench import main


def test_trainer_report_measures_both_and_states_the_overhead(capsys):
    assert main(["--trainer", "--quick"]) == 0
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^\| ([^|]+?) \| (\d+\.\d\d) ± \d+\.\d\d \|", out, flags=re.M))
    seconds = {label: float(value) for label, value in rows.items()}
    alone = seconds["model steps alone: forward, cross-entropy, backward, Adam"]
    bare = seconds["bare loop: the same, drawing each batch on the training thread"]
    (whole,) = [value for label, value in seconds.items() if label.startswith("trainer, whole epoch (batches made")]
    parts = [seconds[k] for k in seconds if k.startswith("of which: ")]
    assert len(parts) == 3 and alone > 0 and bare > 0 and min(seconds.values()) >= 0
    assert abs(whole - sum(parts)) < 0.1 * whole  # medians of parts: nearly additive
    assert re.search(r"The trainer's training part: [+-]\d+\.\d% of the model steps alone \((within|ABOVE)", out)
    assert re.search(r"the model step \(precision 32\): GEMMs [\d.]+ ms, the rest [\d.]+ ms a step", out)
    assert re.search(r"the model step with 2 threads: [\d.]+x one thread", out) or (os.cpu_count() or 1) < 2
    assert re.search(r"^date: \d{4}-\d\d-\d\d; code: ", out, flags=re.M)


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
