"""`mlepi mc`: the Monte Carlo EPI run, locally or on a Dask cluster, stoppable and resumable."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..files import DISK_FULL, write_retrying_or_rescue, write_text_atomic
from ..limits import LIMITS, check_supercell
from ..model_names import force_model_from_name, hamiltonian_model_from_name, model_identity
from ..structures import dirac_bands
from .common import OutputError, check_output_dir, check_output_file, structure_from_arg


def cmd_mc(args) -> int:
    """Monte Carlo EPI: v_F(T) with errors, convergence, for one or two Hamiltonian models.

    Every argument, the structure and the output paths are checked before any model loads
    or anything is written. A checkpoint that meets a full disk is retried, then the run
    stops and its finished samples go to a rescue folder (``files.write_retrying_or_rescue``)."""
    out = check_output_dir(args.out)
    check_output_file(args.summary)
    limits = LIMITS.raised(args.max_atoms)
    atoms = structure_from_arg(args.structure, limits=limits)
    check_supercell(len(atoms), args.supercell, "mc", limits, args.structure)
    from tqdm import tqdm  # the heavy imports (torch) after the checks: a refusal comes at once

    from .. import __version__
    from ..engine import MCSettings, MonteCarloEngine
    from ..results import write_results
    from ..run_store import RunStore

    settings = MCSettings(temperatures=tuple(args.temperature), n_samples=args.samples,
                          seed=args.seed, batch_size=args.batch_size, antithetic=args.antithetic,
                          supercell=args.supercell, n_bands=dirac_bands(atoms),
                          spectral_every=args.spectral_every, path_points=args.path_points,
                          sampling=args.sampling, estimator=args.estimator,
                          target_se=args.target_se)
    forces = force_model_from_name(args.forces)
    hamiltonians = {name: hamiltonian_model_from_name(name) for name in args.electrons}  # bad names: no work done
    runs = {}
    out.mkdir(parents=True, exist_ok=True)
    client = None
    if args.executor == "dask" or args.scheduler:
        from ..distributed import make_client

        client = make_client(args.workers, args.threads_per_worker, args.scheduler)
        print(f"Dask: {len(client.scheduler_info()['workers'])} workers "
              f"({args.scheduler or 'LocalCluster started for this run'})", flush=True)
    stop = StopOnSignal()
    for name in args.electrons:
        if stop.stopped:
            break
        label = "reference" if name == "reference" else "ml"
        engine = MonteCarloEngine(atoms, forces, hamiltonians[name], settings,
                                  device=args.device)
        stop.engine = engine
        runs[label] = engine
        checkpoint = out / f"checkpoint_{label}.npz"
        identity = {"structure": args.structure, "forces": args.forces, "electrons": name,
                    "forces_identity": model_identity(args.forces), "electrons_identity": model_identity(name)}
        start = 0
        if args.resume and checkpoint.is_file():
            from ..checkpoints import read_checkpoint

            saved = read_checkpoint(checkpoint)
            if {k: saved.get(k) for k in identity} != identity:
                raise ValueError(f"{checkpoint} belongs to another run ({ {k: saved.get(k) for k in identity} })")
            start = engine.load_checkpoint(checkpoint)
            print(f"resuming {label}: {start} samples already done", flush=True)
        if settings.estimator == "curvature":
            with stop, tqdm(desc=f"mode curvatures ({label})", unit="solve") as bar:
                engine.mode_curvature(progress=lambda done, n: (setattr(bar, "total", n), bar.update(done - bar.n)))
            if stop.stopped:
                break
        total = len(settings.temperatures) * settings.n_samples
        if client is not None:
            from ..distributed import RunSpec, run_all_distributed

            batches = run_all_distributed(engine, RunSpec(atoms, args.forces, name, settings), client)
        else:
            batches = engine.run_all()
        with stop, tqdm(total=total, initial=min(start, total), desc=f"MC ({label})", unit="sample") as bar:
            for batch in batches:
                bar.update(len(batch.vf))
                bar.set_postfix(T=batch.temperature, **progress_estimate(engine, batch))
                save_checkpoint(engine, checkpoint, identity, client)
    runs = {n: e for n, e in runs.items() if any(e.per_sample.values())}
    if stop.stopped and not runs:
        print("stopped before any sample finished", file=sys.stderr)
        close_client(client)
        return 130
    provenance = {"structure": args.structure, "forces": args.forces, "electrons": args.electrons,
                  "executor": "dask" if client is not None else "local",
                  "mlepi_version": __version__, "command": " ".join(sys.argv)}
    try:
        result = write_results(args.out, runs, provenance)
        label, engine = next(iter(runs.items()))  # the record a runs directory lists: the first model's run
        RunStore.describe(engine, Path(args.out), {"structure": args.structure, "forces": model_identity(args.forces),
                                                   "electrons": model_identity(args.electrons[0])},
                          {"forces": args.forces, "electrons": args.electrons[0]},
                          label=f"{args.structure} · {args.electrons[0]} · seed {settings.seed}",
                          where="mlepi mc" + (" on Dask" if client is not None else ""),
                          checkpoint=f"checkpoint_{label}.npz")
    except OSError as err:
        close_client(client)
        n = sum(len(v) for e in runs.values() for v in e.per_sample.values())
        raise OutputError(err.errno, f"the results could not be written to {args.out} ({err.strerror}); the "
                          f"checkpoints there hold all {n} finished samples: the same command with --resume writes "
                          f"the results when there is room", str(args.out)) from None
    if args.summary:
        summary = {"structure": args.structure, "supercell": args.supercell, "units": result["units"],
                   "static": result["static"], "settings": result["settings"], "provenance": provenance,
                   "temperatures": [{"T": row["T"], "samples": row["samples"],
                                     **{n: {k: row[n][k] for k in ("vf", "vf_se", "vf_rel_change", "gamma1",
                                                                    "gamma1_se", "samples")} for n in runs}}
                                    for row in result["temperatures"]]}
        path = write_text_atomic(args.summary, json.dumps(summary, indent=1, default=float))
        print(f"summary -> {path}")
    for row in result["temperatures"]:  # a gapped material's observable is its gap, graphene's v_F
        print(f"T = {row['T']:6.1f} K: " + "; ".join(
            f"{n} gap {row[n]['gap']:.4f} +- {row[n]['gap_se']:.4f} eV ({1000 * row[n]['gap_change']:+.1f} meV "
            f"vs static {runs[n].static['gap']:.4f} eV, {runs[n].static['gap_at']})" if "gap" in row[n] else
            f"{n} v_F {row[n]['vf']:.4f} +- {row[n]['vf_se']:.4f} ({100 * row[n]['vf_rel_change']:+.1f} % "
            f"vs static)" for n in runs))
    print(f"wrote {args.out}/results.json, vf_vs_T.csv, vf_vs_T.png")
    close_client(client)  # after the results are on disk: a stopped cluster takes seconds to wind down
    if stop.stopped:
        print(f"stopped: the folder holds the {sum(len(v) for e in runs.values() for v in e.per_sample.values())} "
              f"finished samples; the same command with --resume continues", file=sys.stderr)
        return 130
    return 0


def save_checkpoint(engine, checkpoint: Path, identity: dict, client=None) -> None:
    """The engine's finished samples to ``checkpoint`` (atomically: a failed write leaves
    the previous checkpoint whole). On a full disk: retried; if it stays full, the run is
    stopped and the samples go to a rescue folder, and OutputError says where."""
    save = lambda path: engine.save_checkpoint(path, identity)  # noqa: E731
    try:
        save(checkpoint)
        return
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        first = err
    n = sum(len(v) for v in engine.per_sample.values())
    written, in_place = write_retrying_or_rescue(checkpoint, save)
    if in_place:
        print(f"mlepi: the disk was full at {checkpoint}; a retry wrote it, the run goes on", file=sys.stderr)
        return
    engine.cancel()
    close_client(client)
    if written is None:
        raise OutputError(first.errno, f"disk full: {checkpoint} and every rescue folder refused the checkpoint "
                          f"of {n} finished samples; {checkpoint} still holds the previous one", str(checkpoint))
    raise OutputError(first.errno, f"disk full at {checkpoint}: the run stopped after {n} finished sample(s), all "
                      f"saved to {written} (move it to {checkpoint} and run the same command with --resume)",
                      str(checkpoint))


def close_client(client) -> None:
    """Close a Dask client (and the LocalCluster it started; an existing cluster stays up)."""
    if client is not None:
        client.close()


class StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM during ``mlepi mc`` stops the run instead of killing it.

    The engine is cancelled (between local batches; outstanding Dask futures at once),
    the finished samples are written as a complete results folder, and ``--resume``
    continues from them. A second signal interrupts at once. Outside the main thread
    (e.g. ``main()`` called from a worker thread) signals are left alone.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.engine = None
        self.stopped = False
        self._previous = {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name)
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False

    def _handle(self, signum, frame):
        if self.stopped:
            raise KeyboardInterrupt
        self.stopped = True
        print("\nmlepi: stopping (the batches in flight are cancelled; finished samples are kept)",
              file=sys.stderr, flush=True)
        if self.engine is not None:
            self.engine.cancel()


def progress_estimate(engine, batch) -> dict[str, str]:
    """The running estimate a progress bar shows: the gap (eV) of a gapped material, else v_F
    (10^6 m/s)."""
    if engine.gap_probe is not None:
        s = engine.statistics(batch.temperature)
        return {"gap": f"{s['gap']:.4f}+-{s['gap_se']:.4f} eV"}
    return {"vF": f"{batch.vf_mean:.4f}+-{batch.vf_se:.4f}"}
