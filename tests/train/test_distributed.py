"""Training on 2 processes (gloo, CPU) equals one process with the same global batch; only rank 0 writes; a
non-finite loss on one rank stops both; a batch that does not divide by the processes fails before any data.

The 2-process runs share one spawn and one data cache, made by the single-process runs first (module fixture):
starting 2 Python processes with torch costs seconds here, generating the data too.
"""

import itertools
import json
import os
import shutil
import socket
import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import compose_config

from plmu.errors import ConfigError, NonFiniteLossError
from plmu.train.distributed import Context, Sharding, check_batch_sizes, shard_bounds
from plmu.train.objectives import Regression, TokenCrossEntropy
from plmu.train.run import train

# Mackey-Glass at toy size. 5 training series in batches of 4: the second batch has 1 row, so rank 1 has none
# (its zero-weight row); 3 validation series split 2 + 1. On the CPU with gloo, also on a machine with a GPU (two
# NCCL processes cannot share one GPU, and the equalities below are float32 CPU claims).
TINY = [
    "task=mackey_glass",
    "trainer.device=cpu",
    "task.data.n_series=16",
    "task.data.steps=200",
    "task.data.n_train=5",
    "task.data.n_val=3",
    "model.hidden_size=8",
    "model.num_layers=2",
    "logger=none",
    "trainer.progress=false",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
]
# A language model on 4 streams of a small text (text8's form), its state carried from chunk to chunk: each
# process carries its 2 streams; the last stream ends in padding, so the ranks' token counts differ.
TEXT = " ".join(["the cat sat on the mat", "a dog ate the bone", "one two three four"] * 20)
STREAMS = [
    "task=text8",
    "trainer.device=cpu",
    "task.data.path=ROOT/text8.txt",  # ROOT: the fixture's folder
    "task.data.expected_characters=null",
    "task.data.chunk_length=16",
    "model.embed_dim=8",
    "model.hidden_size=16",
    "model.memory_d=4",
    "trainer.batch_size=4",
    "trainer.max_epochs=1",
    "trainer.val_every_n_steps=7",  # checkpoints in the middle of the epoch, with every rank's carried state
    "logger=none",
    "trainer.progress=false",
    "trainer.log_every_n_steps=1",
]
RUNS = {  # name: overrides; each is trained by 2 processes and by 1
    "plain": [*TINY, "trainer.batch_size=4"],
    # 3 micro-batches of 2, 2 and 1 rows per epoch, in windows of 2 (no_sync on the first), clipped gradients
    "accumulated": [*TINY, "trainer.batch_size=2", "trainer.accumulate_grad_batches=2", "trainer.grad_clip=0.05"],
    "carried_streams": STREAMS,
}
FAILING = {  # name: overrides; only the 2-process outcome is checked
    "odd_batch": [*TINY, "trainer.batch_size=3"],
    "nan_on_rank_1": [*TINY, "trainer.batch_size=4"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, root: str) -> None:
    """One of 2 processes: every job of RUNS and FAILING in turn; each outcome to <root>/<job>/outcome<rank>.json."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": "2"})
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    from plmu.train import distributed

    for name, extra in {**RUNS, **FAILING}.items():
        job = Path(root) / name
        data = job / "data" if name == "odd_batch" else Path(root) / "data"  # odd_batch: to see that none is read
        overrides = [*(o.replace("ROOT", root) for o in extra), f"data_dir={data}"]
        if name == "nan_on_rank_1" and rank == 1:
            _nan_on_call(3)
        try:
            # Each rank names its own folder: the run must still go to rank 0's only.
            results = train(compose_config(overrides), job / f"ddp_rank{rank}")
            outcome = {"results": results}
        except Exception as error:
            outcome = {"error": type(error).__name__, "message": str(error), "trace": traceback.format_exc()}
        (job / f"outcome{rank}.json").write_text(json.dumps(outcome, default=str))
    distributed.teardown()


def _nan_on_call(when: int) -> None:
    calls, real_loss = {"n": 0}, Regression.loss

    def loss(self, outputs, batch):
        calls["n"] += 1
        value = real_loss(self, outputs, batch)
        return value * float("nan") if calls["n"] == when else value

    Regression.loss = loss


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """(root, the 2-process outcomes of every job by name: [rank 0's, rank 1's], the single-process results of
    RUNS by name); the single-process runs are in <root>/<name>/single."""
    root = tmp_path_factory.mktemp("ddp")
    single = {}
    for name in {**RUNS, **FAILING}:
        (root / name).mkdir()
    (root / "text8.txt").write_text(TEXT)
    for name, extra in RUNS.items():  # first: they write the data cache the processes then read
        overrides = [*(o.replace("ROOT", str(root)) for o in extra), f"data_dir={root / 'data'}"]
        single[name] = train(compose_config(overrides), root / name / "single")
    # fork: the processes start with torch and plmu already imported (spawn would import them again, seconds each)
    mp.start_processes(_worker, args=(_free_port(), str(root)), nprocs=2, join=True, start_method="fork")
    outcomes = {
        name: [json.loads((root / name / f"outcome{rank}.json").read_text()) for rank in range(2)]
        for name in {**RUNS, **FAILING}
    }
    return root, outcomes, single


def _records(run: Path) -> list[dict]:
    drop = {"time", "epoch_seconds", "seconds", "train_seconds"}
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in run.read_text().splitlines()]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_two_processes_train_what_one_trains(name, ddp_runs):
    root, outcomes, singles = ddp_runs
    for outcome in outcomes[name]:
        assert "error" not in outcome, outcome.get("trace")
    single, ddp_dir, single_dir = singles[name], root / name / "ddp_rank0", root / name / "single"
    ddp_records, single_records = _records(ddp_dir / "metrics.jsonl"), _records(single_dir / "metrics.jsonl")
    assert [r.keys() for r in ddp_records] == [r.keys() for r in single_records]  # one writer: no doubled lines
    for ddp, one in zip(ddp_records, single_records, strict=True):
        for key, value in one.items():
            assert ddp[key] == pytest.approx(value, rel=1e-5), (key, ddp, one)
    ddp_last = torch.load(ddp_dir / "checkpoints" / "last.pt", weights_only=True)
    single_last = torch.load(single_dir / "checkpoints" / "last.pt", weights_only=True)
    for key, weight in single_last["model"].items():
        torch.testing.assert_close(ddp_last["model"][key], weight, rtol=1e-5, atol=1e-6)
    for rank_results in (outcomes[name][0]["results"], outcomes[name][1]["results"]):  # every rank: global metrics
        assert rank_results["test"] == pytest.approx(single["test"], rel=1e-5)
        assert rank_results["world_size"] == 2 and rank_results["command"].endswith(f"hydra.run.dir={ddp_dir}")


def test_only_rank_0_writes_and_it_keeps_every_ranks_random_state(ddp_runs):
    root, _, _ = ddp_runs
    job = root / "plain"
    assert not (job / "ddp_rank1").exists()  # rank 1's own folder name was replaced by rank 0's
    assert json.loads((job / "ddp_rank0" / "results.json").read_text())["world_size"] == 2
    last = torch.load(job / "ddp_rank0" / "checkpoints" / "last.pt", weights_only=True)
    assert last["world_size"] == 2 and len(last["rng_ranks"]) == len(last["carry_ranks"]) == 2
    assert torch.equal(last["rng_ranks"][0]["torch"], last["rng"]["torch"])
    assert not torch.equal(last["rng_ranks"][0]["torch"], last["rng_ranks"][1]["torch"])  # own dropout streams


def test_a_nan_on_one_rank_stops_both_with_the_same_error(ddp_runs):
    _, outcomes, _ = ddp_runs
    first, second = outcomes["nan_on_rank_1"]
    assert first["error"] == second["error"] == NonFiniteLossError.__name__
    assert first["message"] == second["message"]
    assert "the training loss became nan on rank 1 of 2 at epoch 2, step 3" in first["message"]


def test_a_batch_that_does_not_divide_by_the_processes_fails_before_the_data(ddp_runs):
    root, outcomes, _ = ddp_runs
    for outcome in outcomes["odd_batch"]:
        assert outcome["error"] == ConfigError.__name__
        assert outcome["message"].startswith(
            "trainer.batch_size=3 is the global batch, split evenly over the 2 processes, and 3 does not divide by "
            "2: use trainer.batch_size=2 or 4"
        )
    assert not (root / "odd_batch" / "data").exists()


def test_check_batch_sizes_names_the_key_and_the_fix():
    check_batch_sizes(8, None, 4)
    check_batch_sizes(3, 5, 1)  # one process: anything goes
    with pytest.raises(ConfigError, match=r"trainer.eval_batch_size=6 .* use trainer.eval_batch_size=4 or 8"):
        check_batch_sizes(8, 6, 4)
    with pytest.raises(ConfigError, match=r"trainer.batch_size=2 .* use trainer.batch_size=4 \(a multiple of 4\)"):
        check_batch_sizes(2, None, 4)


@pytest.mark.parametrize(("rows", "world"), [(8, 2), (5, 2), (1, 2), (7, 3), (2, 4)])
def test_shards_cover_a_batch_once_in_order(rows, world):
    bounds = [shard_bounds(rows, rank, world) for rank in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == rows
    assert all(stop == start for (_, stop), (start, _) in itertools.pairwise(bounds))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


def _as_rank(rank: int, world_size: int) -> Sharding:
    """A Sharding that believes it is ``rank`` of ``world_size`` (no process group needed for its batch logic)."""
    sharding = Sharding()
    sharding.context, sharding.enabled, sharding.is_main = Context(rank, world_size, rank), True, rank == 0
    return sharding


def test_each_rank_takes_its_rows_weighted_by_what_the_loss_averages_over():
    objective = TokenCrossEntropy(ignore_index=-100)
    target = torch.tensor([[1, 2, 3], [4, 5, 6], [7, -100, -100], [-100, -100, -100]])  # 6 + 1 tokens by rank
    batch = {"inputs": torch.arange(12).view(4, 3), "target": target}
    assert objective.loss_count(batch) == 7
    first, share0 = _as_rank(0, 2).local(batch, objective)
    second, share1 = _as_rank(1, 2).local(batch, objective)
    assert torch.equal(first["inputs"], batch["inputs"][:2]) and torch.equal(second["target"], target[2:])
    assert share0 == pytest.approx(2 * 6 / 7) and share1 == pytest.approx(2 * 1 / 7)  # DDP then halves the sum
    # 2 rows over 3 processes: the last has none and runs one row with weight 0
    rows, share = _as_rank(2, 3).local({"inputs": batch["inputs"][:2], "target": target[:2]}, objective)
    assert len(rows["target"]) == 1 and share == 0.0
    outputs = torch.randn(1, 3, 27, requires_grad=True)
    term = Sharding.weighted(objective.loss(outputs, rows), outputs, share)
    term.backward()
    assert term.item() == 0.0 and torch.equal(outputs.grad, torch.zeros_like(outputs))


def test_token_losses_are_weighted_by_their_tokens_not_rows():
    objective = TokenCrossEntropy(ignore_index=-100)
    batch = {"target": torch.tensor([[1, 2, 3], [4, -100, -100]]), "inputs": torch.zeros(2, 3, dtype=torch.long)}
    assert objective.loss_count(batch) == 4
    assert Regression().loss_count({"target": torch.zeros(2, 3, 1)}) == 6
    sharding = Sharding()  # one process: the batch as it is, no weight
    assert sharding.local(batch, objective)[1] is None and not sharding.enabled


def test_one_process_resumes_a_two_process_run(ddp_runs, tmp_path):
    root, _, _ = ddp_runs
    for name in ("ddp_rank0", "single"):
        shutil.copytree(root / "plain" / name, tmp_path / name)
        overrides = [*RUNS["plain"], f"data_dir={root / 'data'}", "trainer.max_epochs=3"]
        train(compose_config(overrides), tmp_path / name)  # trainer.resume=auto: from epoch 2's last.pt
    third = [_records(tmp_path / name / "metrics.jsonl")[-1] for name in ("ddp_rank0", "single")]
    assert third[0]["epoch"] == third[1]["epoch"] == 3
    for key, value in third[1].items():
        assert third[0][key] == pytest.approx(value, rel=1e-5), key
