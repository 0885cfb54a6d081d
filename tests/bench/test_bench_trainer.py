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
