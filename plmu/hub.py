"""A trained run in the Hugging Face layout, on the Hub or in a folder: save it, push it, load it back in one call.

    from plmu.hub import PlmuModel
    hub = PlmuModel.from_run("outputs/psmnist/plmu/<time>")      # its best checkpoint
    hub.save_pretrained("psmnist-plmu")                          # a folder: weights, config, card
    hub.push_to_hub("<user>/psmnist-plmu")                       # the same, as a Hub repository (needs a login)
    model = PlmuModel.from_pretrained("<user>/psmnist-plmu").model   # or the folder: ready for forward and step

Built on huggingface_hub's ``ModelHubMixin`` (not transformers' ``PreTrainedModel``): plmu's models are plain
``nn.Module``s rebuilt from their run's config by :func:`plmu.models.build.build_model`, which is exactly what the
mixin's two hooks need (``_save_pretrained``, ``_from_pretrained``), with ``push_to_hub``, revisions, caching and
tokens coming from the mixin, and no transformers config class to keep in step. The folder holds
``model.safetensors`` (the weights), ``run_config.yaml`` (the run's resolved config), ``model_args.json`` (the shapes
the data gave: vocabulary, classes), ``data_info.json``, ``results.json`` and ``README.md``, a model card written
from results.json (task, data, metric, the command that trained it, how to load it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import ModelHubMixin

from plmu.errors import CheckpointError, RunFolderError

FILES = ("model.safetensors", "run_config.yaml", "model_args.json", "data_info.json", "results.json")


class PlmuModel(
    ModelHubMixin,
    library_name="plmu",
    tags=["legendre-memory-unit", "plmu"],
):
    """A trained plmu model with what it was trained on. ``model`` is in eval mode; ``config`` the run's resolved
    config (a dict); ``model_args`` the builder's shapes; ``data_info`` and ``results`` the run's records."""

    def __init__(
        self,
        model: Any,
        config: dict[str, Any],
        model_args: dict[str, Any],
        data_info: dict[str, Any] | None = None,
        results: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.config, self.model_args = model, config, model_args
        self.data_info, self.results = data_info or {}, results or {}
        # config.json (the mixin's): what the model is, in brief; the records have their own files
        self._hub_mixin_config = {
            "library": "plmu",
            "task": config.get("task", {}).get("name"),
            "model": self.results.get("model"),
            "builder": config.get("model", {}).get("_target_"),
        }

    @classmethod
    def from_run(cls, path: str | Path, checkpoint: str = "best") -> PlmuModel:
        """A ``plmu-train`` run folder's model (``checkpoint``: best, last or a path) with its records."""
        from omegaconf import OmegaConf

        from plmu.runs import load_run

        run = load_run(path, checkpoint)
        config = OmegaConf.to_container(run.config, resolve=True)
        try:
            results = json.loads((run.path / "results.json").read_text())
        except (OSError, ValueError):
            results = unfinished_record(run, config)  # the card says what these weights are, and nothing more
        return cls(run.model, config, run.model_args, run.data_info, results)

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> Any:
        """ModelHubMixin's save (and push), into a new or empty folder or one save_pretrained wrote before; never a
        run folder (its results.json and data_info.json would be replaced) nor a folder of other files."""
        check_save_folder(Path(save_directory).expanduser())
        return super().save_pretrained(save_directory, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        from omegaconf import OmegaConf
        from safetensors.torch import save_model

        folder = Path(save_directory)
        save_model(self.model, str(folder / "model.safetensors"))  # tied tensors (an embedding shared) kept once
        umask = os.umask(0)  # safetensors writes 0600; the folder's files should be as readable as any other
        os.umask(umask)
        os.chmod(folder / "model.safetensors", 0o666 & ~umask)
        (folder / "run_config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(self.config)))
        for name, record in (("model_args", self.model_args), ("data_info", self.data_info), ("results", self.results)):
            (folder / f"{name}.json").write_text(json.dumps(record, indent=2, default=str))
        (folder / "README.md").write_text(model_card(self.config, self.results))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> PlmuModel:
        """A saved model from a local folder or a Hub repository (``"<user>/<name>"``); ModelHubMixin's call, with
        a mistyped path, a repository that does not exist and no network each one line (a CheckpointError)."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        except CheckpointError:
            raise
        except Exception as error:  # huggingface_hub's: an invalid repo id (a path typo), not found, offline
            model_id = str(pretrained_model_name_or_path)
            if Path(model_id).expanduser().is_dir():
                raise  # a folder here: the error is not about finding it
            reason = f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
            raise CheckpointError(
                f"{model_id} is neither a folder here nor a Hub repository that could be read ({reason}): give a "
                "folder save_pretrained wrote, or '<user>/<name>' with the network"
            ) from None

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        **model_kwargs: Any,
    ) -> PlmuModel:
        from omegaconf import OmegaConf
        from safetensors.torch import load_model

        from plmu.models.build import build_model

        folder = Path(model_id).expanduser()
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(repo_id=model_id, revision=revision, cache_dir=cache_dir,
                                            force_download=force_download, local_files_only=local_files_only,
                                            token=token, allow_patterns=[*FILES, "README.md"]))  # fmt: skip
        missing = [name for name in FILES[:3] if not (folder / name).is_file()]
        if missing:
            raise CheckpointError(
                f"{model_id} is not a plmu model in the Hugging Face layout ({', '.join(missing)} missing): save one "
                f"with plmu.hub.PlmuModel.from_run(<run folder>).save_pretrained(<folder>)"
            )
        try:
            config = OmegaConf.load(folder / "run_config.yaml")
            model_args = json.loads((folder / "model_args.json").read_text())
        except Exception as error:  # a torn or edited file: YAML's, JSON's or OmegaConf's own errors
            raise CheckpointError(
                f"{folder}: run_config.yaml or model_args.json cannot be read ({' '.join(str(error).split())[:200]}): "
                "save the run again with save_pretrained"
            ) from None
        model = build_model(config, model_args or None)
        try:
            load_model(model, str(folder / "model.safetensors"))
        except Exception as error:  # a truncated or foreign file: safetensors' own errors, torch's shape errors
            raise CheckpointError(
                f"{folder / 'model.safetensors'} cannot be loaded into the model run_config.yaml builds "
                f"({' '.join(str(error).split())[:300]}): save the run again with save_pretrained"
            ) from None
        records = {}
        for name in ("data_info", "results"):
            path = folder / f"{name}.json"
            records[name] = json.loads(path.read_text()) if path.is_file() else {}
        return cls(model.eval(), OmegaConf.to_container(config), model_args, records["data_info"], records["results"])


SAVED = frozenset({*FILES, "README.md", "config.json"})  # what a save writes (config.json: the mixin's)


def check_save_folder(folder: Path) -> None:
    """Refuse a save_pretrained folder that is, or lies in, a run folder, or holds files a save did not write."""
    from plmu.train.run_folder import run_folder_holding

    inside = run_folder_holding(folder / "model.safetensors")  # the folder a run's, or a run's checkpoints/
    if inside is not None:
        run = inside[0]
        raise RunFolderError(
            f"save_pretrained({str(folder)!r}): {run} is a plmu-train run folder, and saving there would replace its "
            f"results.json and data_info.json; save into a new folder, e.g. {run.name}-hub"
        )
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"save_pretrained({str(folder)!r}): it is a file; give a folder")
    others = (
        sorted(p.name for p in folder.iterdir() if p.name not in SAVED and not p.name.startswith("."))
        if folder.is_dir()
        else []
    )  # a clone: .git
    if others:
        raise RunFolderError(
            f"save_pretrained({str(folder)!r}) holds files a save did not write ({', '.join(others[:5])}"
            f"{' ...' if len(others) > 5 else ''}) and would write beside or over them; give a new or empty folder"
        )


def unfinished_record(run: Any, config: dict[str, Any]) -> dict[str, Any]:
    """What a card can truthfully say of a run without results.json (still training, interrupted, killed): its
    status, which checkpoint and epoch the weights are, the parameters; no test, no command (recorded at the end)."""
    from plmu.models.backbones import model_family

    try:
        status = json.loads((run.path / "status.json").read_text()).get("status", "unfinished")
    except (OSError, ValueError, AttributeError):
        status = "unfinished"
    return {
        "unfinished": status if status != "finished" else "unfinished (results.json missing)",
        "model": model_family(config.get("model", {})),
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "checkpoint": run.checkpoint.name,
        "epochs": run.epoch,
        "seed": config.get("seed"),
    }


def model_card(config: dict[str, Any], results: dict[str, Any]) -> str:
    """The README.md of a saved model, from its run's results.json: what it is, what it scored, how it was trained
    and how to load it."""
    task = config.get("task", {}).get("name", results.get("task", "?"))
    from plmu.models.backbones import family_label

    family = results.get("model") or "plmu"
    metric, test, best = results.get("metric"), results.get("test"), results.get("best_val")
    scored = "not measured (a selection run)" if test is None else f"{metric} {test:.6g}"
    if results.get("unfinished"):
        return _unfinished_card(task, family, results)
    best_text = f"{best:.6g}" if isinstance(best, int | float) else "?"
    lines = [
        "---",
        "library_name: plmu",
        "tags: [legendre-memory-unit, plmu]",
        "---",
        f"# {task}: {family_label(family)} (`model={family}`)",
        "",
        'A model trained with plmu, a reimplementation of "Parallelizing Legendre Memory Unit Training" (Chilkuri & '
        "Eliasmith, ICML 2021).",
        "",
        f"- task: `{task}`; data: {results.get('dataset', '?')}",
        f"- test: {scored}; best validation: {best_text} (epoch {results.get('best_epoch')})",
        f"- parameters: {results.get('parameters')}; epochs: {results.get('epochs')}; seed: {results.get('seed')}",
        f"- trained with: `{results.get('command', '?')}` (plmu {results.get('plmu_version', '?')}, torch "
        f"{results.get('torch_version', '?')})",
        "",
        "```python",
        "from plmu.hub import PlmuModel",
        "model = PlmuModel.from_pretrained('<this repository or folder>').model   # eval mode",
        "```",
        "",
        "The model runs in parallel (`model(batch)`) or as an RNN (`model.initial_state`, `model.step`); "
        "`run_config.yaml` is the exact config it was trained with, `results.json` its record.",
        "",
    ]
    return "\n".join(lines)


def _unfinished_card(task: str, family: str, record: dict[str, Any]) -> str:
    from plmu.models.backbones import family_label

    return "\n".join([
        "---", "library_name: plmu", "tags: [legendre-memory-unit, plmu]", "---",
        f"# {task}: {family_label(family)} (`model={family}`), an unfinished run",
        "",
        f"- status: {record['unfinished']}: the run has not ended, so no test was measured and no result is recorded",
        f"- these weights: `{record['checkpoint']}` after epoch {record.get('epochs')}; parameters: "
        f"{record.get('parameters')}; seed: {record.get('seed')}",
        "- trained with: `run_config.yaml` (the command is recorded in results.json when the run ends)",
        "",
        "```python", "from plmu.hub import PlmuModel",
        "model = PlmuModel.from_pretrained('<this repository or folder>').model   # eval mode", "```", "",
    ])  # fmt: skip
