"""The periodic work measures and returns; the trainer decides what is best (issue 9): periodic.py
does not import the trainer and runs on any object with the attributes of ``TrainingRun``."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import ncsn.eval
from ncsn.training import Trainer, periodic
from test_train_support import tiny_config


def test_periodic_does_not_import_the_trainer() -> None:
    tree = ast.parse(Path(periodic.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert "ncsn.training.trainer" not in imported and "ncsn.training.checkpoint" not in imported


def test_periodic_returns_its_measurements_and_keeps_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ncsn.eval, "score_samples",
                        lambda samples, reference, *, metrics, **kwargs: {metrics[0]: 4.5})
    config = tiny_config(training={"test_freq": 2},
                         eval={"every": 2, "num_samples": 4, "metric": "kid"})
    tr = Trainer(config, tmp_path / "run", progress=False)
    fields = {name: getattr(tr, name) for name in periodic.TrainingRun.__annotations__}
    run = SimpleNamespace(**fields, eval_model=tr.eval_model, model_spec=tr.model_spec)
    work = periodic.Periodic(run)  # only what the protocol names, no trainer
    run.step = 1
    assert work.after_step() == {}
    run.step = 2
    results = work.after_step()
    assert set(results) == {"test_loss", "kid"} and results["kid"] == 4.5
    assert results["test_loss"] > 0
    assert not (tmp_path / "run" / "checkpoints").exists() and tr.best is None
