"""The training configurations in configs/: each loads, and a run that starts from another run's
weights (``init_from``) builds the same network as the configuration that trains that run."""

from pathlib import Path

import pytest

from mlepi_core.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
TRAINING = [p for p in CONFIGS if "task" in p.read_text()]


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.name)
def test_a_training_config_loads(path):
    cfg = TrainConfig.load(path)
    assert cfg.output_dir and cfg.data


@pytest.mark.parametrize("path", [p for p in TRAINING if TrainConfig.load(p).init_from], ids=lambda p: p.name)
def test_init_from_names_a_run_of_the_same_network(path):
    cfg = TrainConfig.load(path)
    run = str(Path(cfg.init_from).parent)
    sources = [TrainConfig.load(p) for p in TRAINING if TrainConfig.load(p).output_dir == run]
    assert sources, f"{path.name}: no configuration trains {run}"
    for source in sources:
        assert source.model == cfg.model, f"{path.name} starts from {run}, a network with other settings"
