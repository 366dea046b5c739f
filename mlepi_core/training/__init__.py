"""Training mlepi's networks: a config file in, checkpoints, logs and metrics out.

The modules, in the order a run uses them:

- ``config``: ``TrainConfig``, everything a run depends on (YAML in and out).
- ``task``: what the loop asks of a task, and ``evaluate`` (a model's metrics on a split).
- ``phonon_task``: HedgeNet-Phonon on energies and forces (extxyz).
- ``electron_task``: HedgeNet-Electron on H and S blocks (a DeepH data set).
- ``ema``: the moving average of the weights that is validated and saved.
- ``trainer``: the loop (optimizer, schedule, stages, early stopping, checkpoints, resume).
- ``evaluation``: a saved model on a data set's splits, and Table II.
"""

from .config import DTYPES, TrainConfig, resolve_device
from .ema import EMA
from .electron_task import ElectronTask
from .evaluation import electron_metrics_table, evaluate_model
from .phonon_task import PhononTask
from .task import Task, evaluate
from .trainer import CHECKPOINT_FILE, TASKS, Trainer, epoch_order, train

__all__ = ["CHECKPOINT_FILE", "DTYPES", "EMA", "ElectronTask", "PhononTask", "TASKS", "Task", "TrainConfig",
           "Trainer", "electron_metrics_table", "epoch_order", "evaluate", "evaluate_model",
           "resolve_device", "train"]
