"""plmu.train.sizes: a family's sizes per task (conf/sizes/<family>.yaml), read as ${size:KEY}, recorded as values."""

import pytest
from conftest import compose_config
from omegaconf import OmegaConf

from plmu.errors import ConfigError
from plmu.train.schema import check_config
from plmu.train.sizes import settle


def test_the_table_gives_the_sizes_and_the_record_keeps_only_their_values():
    cfg = compose_config(["task=psmnist", "model=plmu"])
    assert "sizes" in cfg and OmegaConf.is_interpolation(cfg.model, "hidden_size")
    settled = settle(cfg)
    assert "sizes" not in settled
    assert settled.model.hidden_size == 346 and settled.model.dropout == 0.1 and settled.model.pooling == "last"
    assert not OmegaConf.is_interpolation(settled.model, "hidden_size")
    assert OmegaConf.is_interpolation(settled.task.data, "root")  # other interpolations stay: ${data_dir}
    assert "sizes" in cfg  # the composed config is left as it was


def test_a_family_changes_a_task_level_key_through_the_table():
    assert settle(compose_config(["task=psmnist", "model=transformer"])).model.pooling == "mean"
    assert settle(compose_config(["task=imdb", "model=transformer"])).task.data.max_length == 512
    assert settle(compose_config(["task=imdb", "model=lstm"])).task.data.max_length == 2048
    assert settle(compose_config(["task=mackey_glass", "model=lstm"])).trainer.optimizer.lr == 1e-3
    assert settle(compose_config(["task=mackey_glass", "model=s4d"])).trainer.optimizer.lr == 3e-3


def test_the_command_line_wins_over_the_table():
    cfg = settle(compose_config(["task=psmnist", "model.hidden_size=64", "model=lstm", "model.num_layers=2"]))
    assert (cfg.model.hidden_size, cfg.model.num_layers) == (64, 2)
    check_config(compose_config(["task=mackey_glass", "model=lstm", "trainer.optimizer.lr=0.01"]))


def test_a_misspelt_size_is_refused_naming_the_file():
    with pytest.raises(ConfigError, match=r"^conf/sizes/plmu.yaml: psmnist.poolng is read by no config key"):
        check_config(compose_config(["task=psmnist", "+sizes.psmnist.poolng=mean"]))


def test_an_experiment_borrowing_another_tasks_sizes_records_values():
    """experiment=imdb_finetune reads conf/sizes/plmu.yaml's imdb_lm entry (${sizes.imdb_lm.hidden_size}) while the
    task is imdb: settled, nothing refers to the table any more, and the model resolves."""
    cfg = settle(compose_config(["experiment=imdb_finetune"]))
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert (model["hidden_size"], model["embed_dim"], model["num_layers"], model["theta"]) == (128, 128, 5, 128)
    assert "${size" not in str(OmegaConf.to_container(cfg.model))  # ${size:...} and ${sizes.<task>...} alike
