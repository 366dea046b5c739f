"""The training loop: a ``TrainConfig`` in, checkpoints, logs and the best model out.

``Trainer`` is model-agnostic: it drives a task (``PhononTask`` or ``ElectronTask``,
chosen by the config's ``task``). The loop provides Adam/AdamW with a ReduceLROnPlateau
or cosine schedule, an exponential moving average (EMA) of the weights (validated and
saved), early stopping on the validation loss, an optional second stage with other loss
weights (MACE's "stage two": energy weighted up at the end), a tqdm progress bar, CSV
logs of steps and epochs, and checkpoints written atomically every N steps, every M
minutes and after each epoch. A run restarted with the same config resumes from its last
checkpoint and continues exactly as if it had never stopped: the batch order of epoch e
is drawn from a generator keyed by (seed, e), and the checkpoint records the position
inside the epoch.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import torch

from .. import __version__
from ..files import write_text_atomic, write_torch_atomic
from .config import DTYPES, TrainConfig, plain, resolve_device
from .ema import EMA
from .electron_task import ElectronTask
from .phonon_task import PhononTask
from .task import add_sums, evaluate

TASKS = {"phonon": PhononTask, "electron": ElectronTask}
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
# Settings that may change between a run and its resumption (they do not change the numbers
# of the steps already taken).
RESUMABLE_CHANGES = {"max_epochs", "max_steps", "max_time_h", "patience", "progress",
                     "checkpoint_every_steps", "checkpoint_every_minutes", "log_every_steps",
                     "num_threads", "device", "eval_batch_size", "output_dir", "data_workers"}
STAGE_TWO_SETTINGS = {"stage_two_epoch", "stage_two_energy_weight", "stage_two_forces_weight", "stage_two_lr"}


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    """The shuffled order of epoch ``epoch``: a pure function of (seed, epoch), hence resumable."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g).tolist()


class Trainer:
    """Runs ``cfg`` on ``task``; ``run()`` returns the final metrics (also in metrics.json)."""

    def __init__(self, cfg: TrainConfig, task=None, resume: bool = True):
        cfg.check()
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.device = resolve_device(cfg.device)
        self.dtype = DTYPES[cfg.dtype]
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self.task = task if task is not None else TASKS[cfg.task](cfg)
        torch.manual_seed(cfg.seed)
        if cfg.init_from:
            self._adopt_statistics(Path(cfg.init_from), resume)
        self.model = self.task.build_model().to(self.device, self.dtype)
        fresh = not (resume and (self.out / CHECKPOINT_FILE).is_file())
        if cfg.init_from and fresh:
            self._init_weights(Path(cfg.init_from))  # (a resumed run takes its checkpoint's weights)
        self.pair_fit = self._fit_pairs() if cfg.pair_fit_reference and fresh else None
        if not cfg.train_pair:
            for term in getattr(self.model, "pair_terms", {}).values():
                term.requires_grad_(False)
        self.ema = EMA(self.model, cfg.ema_decay)
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = opt_cls(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad)
        if cfg.scheduler == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=cfg.lr_factor, patience=cfg.scheduler_patience, min_lr=cfg.min_lr)
        elif cfg.scheduler == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=cfg.max_epochs, eta_min=cfg.min_lr)
        else:
            self.scheduler = None
        self.state = {"epoch": 0, "batch": 0, "step": 0, "stage": 1, "best_val": math.inf,
                      "best_epoch": -1, "bad_epochs": 0, "elapsed_s": 0.0, "done": False,
                      "train_sums": {}}
        if self.pair_fit:
            self.state["pair_fit"] = self.pair_fit
        self.resumed = False
        if resume and (self.out / CHECKPOINT_FILE).is_file():
            self._load_checkpoint(self.out / CHECKPOINT_FILE)
            self.resumed = True
        self.task.earlier_data = self.state.get("earlier_data", [])

    # -- bookkeeping --
    @property
    def weights(self) -> tuple[float, float]:
        return self.task.loss_weights(self.cfg, self.state["stage"])

    def _adopt_statistics(self, model_dir: Path, resume: bool) -> None:
        """A continuation keeps the network it starts from on any data: the settings a training
        split fits (``task.fitted``: reference energies, neighbour counts, scales) are the
        saved model's (a resumed run's: its checkpoint's), unless the configuration names them."""
        checkpoint = self.out / CHECKPOINT_FILE
        if resume and checkpoint.is_file():
            source = torch.load(checkpoint, map_location="cpu", weights_only=False)["model_config"]
        else:
            from ..models.io import load_model

            source = load_model(model_dir, kind=self.task.kind).network.config.to_dict()
        keep = {k: source[k] for k in self.task.fitted if k not in self.cfg.model}
        self.task.model_config = replace(self.task.model_config, **keep)

    def _init_weights(self, model_dir: Path) -> None:
        """Start from the weights of a saved model (``init_from``) of the same network."""
        from ..models.io import load_model

        saved = load_model(model_dir, kind=self.task.kind).network
        if saved.config.to_dict() != self.task.model_config.to_dict():
            diff = sorted(k for k, v in saved.config.to_dict().items()
                          if self.task.model_config.to_dict().get(k) != v)
            raise ValueError(f"init_from: the network saved in {model_dir} has other settings than "
                             f"this run's model ({', '.join(diff)})")
        self.model.load_state_dict(saved.state_dict())

    def _fit_pairs(self) -> dict:
        """Least-squares pair terms (``training.pair_fit``), fitted in float64 on a copy."""
        import copy

        from ..model_names import force_model_from_name
        from ..structures import build
        from .pair_fit import fit_pair_term

        if not getattr(self.model, "pair_terms", None):
            raise ValueError("pair_fit_reference needs a model with pair_relations")
        self.out.mkdir(parents=True, exist_ok=True)
        exact = copy.deepcopy(self.model).to(torch.float64)
        reference = force_model_from_name(self.cfg.pair_fit_reference)
        fits = {rel: fit_pair_term(exact, reference, build(self.cfg.pair_fit_structure), rel)
                for rel in exact.pair_terms}
        for rel, term in exact.pair_terms.items():
            self.model.pair_terms[rel].load_state_dict(term.state_dict())
        for rel, fit in fits.items():
            self._say(f"pair term on {rel!r} fitted to {self.cfg.pair_fit_reference} on {fit['cells']} "
                      f"{self.cfg.pair_fit_structure} bilayers: interlayer energy RMSE "
                      f"{fit['energy_rmse_mev_per_atom']:.4f} meV/atom, layer force RMSE "
                      f"{fit['layer_force_rmse_mev_per_a']:.3f} meV/A")
        return fits

    def _checkpoint(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "code_version": __version__, "config": self.cfg.to_dict(),
                "model_config": plain(self.task.model_config.to_dict()),
                "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "data_sha256": self.task.data_info().get("sha256"),
                "state": copy.deepcopy(self.state)}

    def save_checkpoint(self) -> Path:
        path = self.out / CHECKPOINT_FILE
        write_torch_atomic(path, self._checkpoint())
        self._last_ckpt_time, self._last_ckpt_step = time.monotonic(), self.state["step"]
        return path

    def _load_checkpoint(self, path: Path) -> None:
        ck = torch.load(path, map_location=self.device, weights_only=False)
        if ck.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: checkpoint format {ck.get('format')} is not {CHECKPOINT_FORMAT}")
        # a setting that a checkpoint predates counts as its default value
        old, new = {**TrainConfig().to_dict(), **ck["config"]}, self.cfg.to_dict()
        resumable = set(RESUMABLE_CHANGES)
        if ck["state"]["stage"] == 1 and ck["state"]["epoch"] < min(
                e if e is not None else math.inf for e in (old["stage_two_epoch"], new["stage_two_epoch"])):
            resumable |= STAGE_TWO_SETTINGS  # stage two is still ahead: its settings may change
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in resumable)
        if changed:
            raise ValueError(f"{path} was written by a run with other settings ({', '.join(changed)}); "
                             f"use another output_dir or start afresh (--no-resume)")
        saved_data, data = ck.get("data_sha256"), self.task.data_info().get("sha256")
        earlier = list(ck["state"].get("earlier_data", []))
        if saved_data is not None and saved_data != data:
            earlier.append(self._check_regenerated_data(path, saved_data, ck["state"],
                                                        {saved_data, *(e["sha256"] for e in earlier)}))
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.scheduler is not None and ck["scheduler"] is not None:
            self.scheduler.load_state_dict(ck["scheduler"])
        self.state.update(ck["state"])
        self.state["earlier_data"] = earlier
        if self.state["done"] and not self.state.get("early_stopped") and self.state["epoch"] < self.cfg.max_epochs:
            self.state["done"] = False  # a finished run given more epochs goes on

    def _check_regenerated_data(self, path: Path, saved_sha: str, saved_state: Mapping,
                                same_labels: set) -> dict:
        """Accept a data set whose bytes differ from the checkpoint's only if it holds the same
        labels: the best saved model, re-evaluated on this validation split, must reproduce the
        validation errors it recorded when trained (relative 1e-4, float rounding of a set
        regenerated on another CPU or library build). ``same_labels``: the sha256 of the versions
        already known to hold these labels. Returns the record kept in the metadata."""
        from ..models.io import load_model, read_metadata

        refuse = (f"{path} was trained on another data set (sha256 {saved_sha[:12]}..., now "
                  f"{str(self.task.data_info().get('sha256'))[:12]}...)")
        model_dir = self.out / "model"
        meta = read_metadata(model_dir) if (model_dir / "metadata.json").is_file() else {}
        recorded = (meta.get("metrics") or {}).get("val") or {}
        if (meta.get("training_data") or {}).get("sha256") not in same_labels or not recorded:
            raise ValueError(f"{refuse}, and no saved model with recorded validation errors on the old "
                             f"data can show the labels are the same; start afresh (--no-resume)")
        ff = load_model(model_dir, device=self.device, dtype=self.dtype)
        now = evaluate(self.task, ff.network, "val", self.cfg.eval_batch_size, self.device, self.dtype)
        keys = [k for k in self.task.metric_names if "_mae" in k and k in recorded]
        rel = {k: abs(now[k] - recorded[k]) / max(abs(recorded[k]), 1e-12) for k in keys}
        if not keys or max(rel.values()) > 1e-4:
            raise ValueError(f"{refuse}: the labels changed (validation errors of the saved model "
                             f"{ {k: round(recorded[k], 6) for k in keys} } then, "
                             f"{ {k: round(now[k], 6) for k in keys} } now); start afresh (--no-resume) "
                             f"or restore the data")
        self._say(f"data set regenerated (sha256 {saved_sha[:12]}... -> "
                  f"{self.task.data_info()['sha256'][:12]}...): the saved model reproduces its "
                  f"validation errors to {max(rel.values()):.1e} relative; continuing")
        return {"sha256": saved_sha, "until_epoch": int(saved_state["epoch"]),
                "until_step": int(saved_state["step"]), "val_relative_difference": max(rel.values())}

    def _log(self, name: str, row: Mapping) -> None:
        path = self.out / name
        new = not path.is_file()
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def _say(self, text: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {text}"
        with open(self.out / "train.log", "a") as fh:
            fh.write(line + "\n")
        if self.cfg.progress:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # -- the loop --
    def train_step(self, batch) -> dict:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, sums = self.task.loss(self.model, batch, self.weights, training=True)
        loss.backward()
        if self.cfg.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        self.optimizer.step()
        self.ema.update(self.model)
        return sums

    def _enter_stage_two(self) -> None:
        self.state["stage"] = 2
        self.state["best_val"], self.state["bad_epochs"] = math.inf, 0
        if self.cfg.stage_two_lr is not None:
            for g in self.optimizer.param_groups:
                g["lr"] = self.cfg.stage_two_lr
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # the loss changed definition: forget stage one's best value and patience count
            self.scheduler.best = self.scheduler.mode_worse
            self.scheduler.num_bad_epochs = 0
            self.scheduler.cooldown_counter = 0
        self._say(f"stage two from epoch {self.state['epoch']}: loss weights {self.weights}")

    def run(self) -> dict:
        from tqdm import tqdm

        cfg, st = self.cfg, self.state
        self.out.mkdir(parents=True, exist_ok=True)
        cfg.dump(self.out / "config.yaml")
        n_train = self.task.split_size("train")
        n_batches = math.ceil(n_train / cfg.batch_size)
        self._last_ckpt_time, self._last_ckpt_step = time.monotonic(), st["step"]
        t_start, elapsed0 = time.monotonic(), st["elapsed_s"]
        n_params = sum(p.numel() for p in self.model.parameters())
        self._say(f"{'resuming' if self.resumed else 'starting'} {cfg.task} training in {self.out}: "
                  f"{n_params} parameters, {n_train} training structures, {n_batches} batches/epoch, "
                  f"epoch {st['epoch']} batch {st['batch']} step {st['step']}, device {self.device}, "
                  f"{cfg.dtype}, {torch.get_num_threads()} threads")
        for note in getattr(self.task, "notes", ()):
            self._say(note)
        stop_reason = None
        while not st["done"] and st["epoch"] < cfg.max_epochs:
            epoch = st["epoch"]
            if st["stage"] == 1 and cfg.stage_two_epoch is not None and (
                    epoch >= cfg.stage_two_epoch or st.get("stage_two_due")):
                self._enter_stage_two()
            order = epoch_order(cfg.seed, epoch, n_train)
            bar = tqdm(total=n_batches, initial=st["batch"], desc=f"epoch {epoch}", unit="batch",
                       disable=not cfg.progress, mininterval=1.0 if sys.stderr.isatty() else 30.0,
                       leave=False, file=sys.stderr)
            while st["batch"] < n_batches:
                b = st["batch"]
                batch = self.task.batch("train", order[b * cfg.batch_size:(b + 1) * cfg.batch_size],
                                        self.device, self.dtype)
                sums = self.train_step(batch)
                st["batch"] += 1
                st["step"] += 1
                add_sums(st["train_sums"], sums)
                st["elapsed_s"] = elapsed0 + time.monotonic() - t_start
                bar.update(1)
                if st["step"] % cfg.log_every_steps == 0:
                    m = self.task.summarize(sums)
                    bar.set_postfix(loss=f"{m['loss']:.3g}", **self.task.postfix(m))
                    self._log("steps.csv", {"step": st["step"], "epoch": epoch, "batch": st["batch"],
                                            "elapsed_s": round(st["elapsed_s"], 2), "lr": self._lr(),
                                            **{k: m.get(k) for k in ("loss", *self.task.metric_names)}})
                if cfg.max_steps is not None and st["step"] >= cfg.max_steps:
                    stop_reason = f"max_steps {cfg.max_steps} reached"
                elif cfg.max_time_h is not None and st["elapsed_s"] > 3600 * cfg.max_time_h:
                    stop_reason = f"max_time_h {cfg.max_time_h} reached"
                if stop_reason:
                    break
                if (st["step"] - self._last_ckpt_step >= cfg.checkpoint_every_steps
                        or time.monotonic() - self._last_ckpt_time > 60 * cfg.checkpoint_every_minutes):
                    self.save_checkpoint()
            bar.close()
            if stop_reason:
                self.save_checkpoint()
                self._say(f"stopping at step {st['step']} (epoch {epoch}, batch {st['batch']}): "
                          f"{stop_reason}; resumable")
                return {"stopped": stop_reason, "step": st["step"]}
            self._end_epoch(epoch)
        metrics = self.finish()
        return metrics

    def _end_epoch(self, epoch: int) -> None:
        cfg, st = self.cfg, self.state
        train_m = self.task.summarize(st["train_sums"])
        val_m = {}
        if self.task.split_size("val"):
            with self.ema.averaged(self.model) as averaged:
                val_m = evaluate(self.task, averaged, "val", cfg.eval_batch_size, self.device,
                                 self.dtype, self.weights)
        val_loss = val_m.get("loss", train_m.get("loss", math.inf))
        if self.scheduler is not None:
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val_loss)
            else:
                self.scheduler.step()
        improved = val_loss < st["best_val"]
        if improved:
            st["best_val"], st["best_epoch"], st["bad_epochs"] = val_loss, epoch, 0
            with self.ema.averaged(self.model) as averaged:
                self.task.save(averaged, self.out / "model", cfg,
                               {"val": val_m, "epoch": epoch, "stage": st["stage"]})
        else:
            st["bad_epochs"] += 1
        row = {"epoch": epoch, "step": st["step"], "elapsed_s": round(st["elapsed_s"], 1), "lr": self._lr(),
               "stage": st["stage"],
               **{f"train_{k}": train_m.get(k) for k in ("loss", *self.task.metric_names)},
               **{f"val_{k}": val_m.get(k) for k in ("loss", *self.task.metric_names)}}
        self._log("epochs.csv", row)
        self._say(f"epoch {epoch}: train loss {train_m.get('loss', float('nan')):.4g} "
                  f"({self.task.describe(train_m)}) | val (EMA) loss "
                  f"{val_loss:.4g} ({self.task.describe(val_m)}) | lr {self._lr():.2e}"
                  f"{' | best' if improved else ''} | {st['elapsed_s'] / 60:.1f} min")
        st["epoch"], st["batch"], st["train_sums"] = epoch + 1, 0, {}
        stage_two_pending = cfg.stage_two_epoch is not None and st["stage"] == 1
        if st["bad_epochs"] >= cfg.patience:
            if stage_two_pending:
                self._say(f"no improvement for {cfg.patience} epochs: starting stage two early")
                st["stage_two_due"] = True
            else:
                self._say(f"early stopping: no better validation loss for {cfg.patience} epochs")
                st["done"], st["early_stopped"] = True, True
        self.save_checkpoint()

    def finish(self) -> dict:
        """Evaluate the best saved model on the configured splits; write metrics.json."""
        from ..models.io import load_model, update_metrics

        model_dir = self.out / "model"
        if not model_dir.is_dir():  # no validation epoch finished: save the EMA model as is
            with self.ema.averaged(self.model) as averaged:
                self.task.save(averaged, model_dir, self.cfg, {})
        ff = load_model(model_dir, device=self.device, dtype=self.dtype)
        metrics = {"best_epoch": self.state["best_epoch"], "steps": self.state["step"],
                   "epochs": self.state["epoch"], "elapsed_s": round(self.state["elapsed_s"], 1),
                   "model_dir": str(model_dir)}
        if self.state.get("pair_fit"):
            metrics["pair_fit"] = self.state["pair_fit"]
        for split in self.cfg.evaluate_splits:
            if self.task.split_size(split):
                metrics[split] = evaluate(self.task, ff.network, split, self.cfg.eval_batch_size,
                                          self.device, self.dtype)
        update_metrics(model_dir, metrics)
        write_text_atomic(self.out / "metrics.json", json.dumps(plain(metrics), indent=1))
        summary = ", ".join(f"{s}: {self.task.describe(m)}"
                            for s, m in metrics.items() if isinstance(m, dict) and m)
        self._say(f"finished after {self.state['epoch']} epochs: {summary}")
        self.state["done"] = True
        self.save_checkpoint()
        return metrics


def train(cfg: TrainConfig, resume: bool = True) -> dict:
    """Run (or resume) the training that ``cfg`` describes; returns the final metrics."""
    return Trainer(cfg, resume=resume).run()
