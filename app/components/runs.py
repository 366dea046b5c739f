"""The runs panel: the runs directory's runs (this server's, kept across restarts), listed
newest first, any number of them overlaid on the page's plots, named in the page's link."""

from __future__ import annotations

import html
import json

import panel as pn
import param

from app.components.context import Context
from app.components.monte_carlo import MonteCarlo
from mlepi_core.run_store import RunStore


RUN_FOLDER_MAX_BYTES = 200 * 2 ** 20  # a folder added to the runs directory (checkpoints and spectra)


def model_text(model: dict) -> str:
    """"name (weights sha256 1a2b3c4d)" of a run's model record."""
    name, identity = str(model.get("name", "")), str(model.get("identity", ""))
    short = identity.split()[-1][:12] if identity.startswith("weights sha256") else ""
    return f"{name.rstrip('/').split('/')[-1]}" + (f" (sha256 {short})" if short else "")


class Runs(pn.viewable.Viewer):
    """``opened`` names the runs shown as overlays (the link's ``runs=``)."""

    ctx = param.ClassSelector(class_=Context, constant=True, precedence=-1)
    monte_carlo = param.ClassSelector(class_=MonteCarlo, constant=True, precedence=-1)
    opened = param.List(default=[], item_type=str, doc="runs of the runs directory overlaid on the plots")
    listing = param.List(default=[], precedence=-1, doc="the runs directory's runs, newest first")
    filter = param.String(default="", doc="show only runs whose name, label, models or place hold this text")
    apply_link = param.Callable(default=None, precedence=-1, doc="sets the page's controls from a link's parameters")

    def __init__(self, **params):
        super().__init__(**params)
        self.refresh()

    def refresh(self) -> None:
        """Read the runs directory again (runs of other tabs and servers appear)."""
        self.listing = RunStore.listing()

    @param.depends("opened", watch=True)
    def _overlay(self):
        """The opened runs as pinned overlays, beside this page's own pins."""
        own = [p for p in self.monte_carlo.pins if "run" not in p]
        shown, problems = [], []
        for name in self.opened:
            try:
                shown.append(RunStore.open(name))
            except (OSError, ValueError, KeyError) as err:
                problems.append(f"{name}: {err}")
        self.monte_carlo.pins = own + shown
        if problems:
            self.ctx.message = "Some runs could not be opened: " + html.escape("; ".join(problems))

    def add_folder(self, path: str) -> str:
        """Copy a run folder from elsewhere on this server's machine (a dashboard run's or an
        `mlepi mc` folder with its record) into the runs directory; returns its name there."""
        import shutil
        from pathlib import Path

        if RunStore.root is None:
            raise ValueError("the server has no runs directory (`mlepi dashboard --runs DIR`)")
        source = Path(path).expanduser()
        why = RunStore._unreadable(source)
        if why:
            raise ValueError(f"{source} is not a run folder: {why}")
        size = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
        if size > RUN_FOLDER_MAX_BYTES:
            raise ValueError(f"{source} holds {size / 2**20:.0f} MiB, over the {RUN_FOLDER_MAX_BYTES / 2**20:.0f} MiB "
                             f"a run folder may bring")
        name, n = source.name, 1
        while (RunStore.root / name).exists():
            n += 1
            name = f"{source.name}-{n}"
        shutil.copytree(source, RunStore.root / name)
        self.refresh()
        return name

    def show(self, name: str) -> None:
        """Show a run of this page's kind in the live plots: its settings go to the controls
        and Run continues it from disk (nothing is sampled again; more samples or another
        temperature then continue its keyed streams). A run whose models are gone, or one
        from `mlepi mc`, is overlaid instead."""
        row = next((r for r in self.listing if r["name"] == name), None)
        if row is None or row.get("unreadable"):
            raise ValueError(f"no readable run {name!r} in the runs directory")
        folder = RunStore.root / name
        query = json.loads((folder / "run.json").read_text()).get("query")
        if not query and (folder / "results.json").is_file() and (folder / "spectral.npz").is_file():
            snapshot, history = snapshot_from_disk(folder)  # an `mlepi mc` folder: its own files
            self.monte_carlo.param.update(snapshot=snapshot, history=history)
            self.ctx.message = f"{name} (from `mlepi mc`) is shown from its files: {snapshot.n_done} samples at {snapshot.T:g} K"
            return
        if not query or not RunStore.continuable(row) or self.apply_link is None:
            self.opened = sorted(set(self.opened) | {name})
            self.ctx.message = f"{name} is overlaid: " + ("its models are gone or changed, so it is view-only"
                                                         if query else "it was computed by `mlepi mc`")
            return
        problems = self.apply_link(query)
        if problems:
            raise ValueError(f"{name}: its settings do not apply here ({'; '.join(problems)})")
        self.monte_carlo.run()

    def shown(self) -> list[dict]:
        """The listed runs that match ``filter`` (case-insensitive, every word)."""
        words = self.filter.lower().split()
        return [r for r in self.listing
                if all(w in json.dumps([r["name"], r["label"], r["models"], r["where"], r["machine"]]).lower()
                       for w in words)]

    def table(self) -> str:
        if RunStore.root is None:
            return "Runs stay in this page: the server has no runs directory (`mlepi dashboard --runs DIR`)."
        if not self.listing:
            return f"No runs in `{RunStore.root}` yet: every run of this server is kept there."
        head = "| run | temperatures: v_F (10⁶ m/s) | models | when | where |\n|---|---|---|---|---|\n"
        rows = []
        for r in self.shown():
            if r.get("unreadable"):
                rows.append(f"| `{html.escape(r['name'])}`<br>*unreadable: {html.escape(r['unreadable'])}* | | | | |")
                continue
            temps = "; ".join(f"{s['T']:g} K: {s['vf']:.4f} ± {s['vf_se']:.4f} ({s['samples']})"
                              for s in r["temperatures"] or [])
            state = "" if RunStore.continuable(r) else "<br>*view only: its models are gone or changed*"
            models = "<br>".join(f"{kind}: {html.escape(model_text(m))}" for kind, m in (r["models"] or {}).items())
            rows.append(f"| {html.escape(r['label'] or r['name'])}<br>`{r['name']}`{state} | {temps} | {models} | "
                        f"{r['written']} | {html.escape(str(r['where']))} on {html.escape(str(r['machine']))}, "
                        f"mlepi {html.escape(str(r.get('mlepi_version')))} |")
        return head + "\n".join(rows)

    def __panel__(self):
        refresh = pn.widgets.Button(name="Refresh", button_type="light", css_classes=["mlepi-runs-refresh"])
        refresh.on_click(lambda _: self.refresh())
        names = lambda: sorted({r["name"] for r in self.listing} | set(self.opened))  # noqa: E731
        chooser = pn.widgets.MultiChoice(name="Overlay runs", options=names(), value=list(self.opened),
                                         css_classes=["mlepi-runs-open"])
        chooser.link(self, value="opened")
        self.param.watch(lambda e: chooser.param.update(options=names(), value=list(e.new)), "opened")
        self.param.watch(lambda _: setattr(chooser, "options", names()), "listing")
        listing = pn.pane.Markdown(pn.bind(lambda *_: self.table(), self.param.listing, self.param.filter),
                                   css_classes=["mlepi-runs"])
        search = pn.widgets.TextInput.from_param(self.param.filter, name="Filter", placeholder="e.g. AB seed 3 dask",
                                                 css_classes=["mlepi-runs-filter"])
        pick = pn.widgets.Select(name="Show a run in the plots", options=names(), css_classes=["mlepi-runs-show-pick"])
        self.param.watch(lambda _: setattr(pick, "options", names()), "listing")
        show = pn.widgets.Button(name="Show", button_type="primary", css_classes=["mlepi-runs-show"])

        def on_show(_):
            try:
                self.show(pick.value)
            except (ValueError, OSError, RuntimeError) as err:
                self.ctx.message = html.escape(str(err))
        show.on_click(on_show)
        folder = pn.widgets.TextInput(name="Add a run folder (a path on the server's machine)",
                                      placeholder="/path/to/results", css_classes=["mlepi-runs-add-path"])
        add = pn.widgets.Button(name="Add", button_type="light", css_classes=["mlepi-runs-add"])

        def on_add(_):
            try:
                self.ctx.message = f"added {self.add_folder(folder.value)} to the runs directory"
            except (ValueError, OSError) as err:
                self.ctx.message = html.escape(str(err))
        add.on_click(on_add)
        return pn.Column(pn.Row(chooser, refresh), pn.Row(pick, show), pn.Row(folder, add), search, listing,
                         css_classes=["mlepi-runs-panel"])


def snapshot_from_disk(folder) -> tuple:
    """(Snapshot, v_F(T) history) of an `mlepi mc` folder at its last temperature, from its
    files alone (results.json, spectral.npz, the checkpoint): the plots of a live run."""
    import pickle

    import numpy as np

    from app.components.monte_carlo import Snapshot
    from mlepi_core.statistics import estimator_units, running_error

    record = json.loads((folder / "run.json").read_text())
    result = json.loads((folder / "results.json").read_text())
    label = record["checkpoint"].removeprefix("checkpoint_").removesuffix(".pkl")
    with open(folder / record["checkpoint"], "rb") as fh:
        state = pickle.load(fh)
    spectra = np.load(folder / "spectral.npz")
    row = result["temperatures"][-1]
    t, stats = row["T"], row[label]
    done = state["per_sample"][t]
    vf = np.array([done[i][0] for i in sorted(done)])
    settings = result["settings"]
    vf = estimator_units(sorted(done), vf, settings.get("antithetic", False), settings.get("sampling", "mc"))
    m = np.arange(1, len(vf) + 1)
    static = {k.removesuffix(f"_{label}"): v for k, v in result["static"].items() if k.endswith(f"_{label}")}
    near_k = {"q": np.asarray(result["near_k_q_per_a"]), "static": np.asarray(result["static"][f"near_k_{label}"]),
              "mean": np.asarray(stats["near_k_ev"]), "se": np.asarray(stats["near_k_se_ev"], dtype=float)}
    snapshot = Snapshot(
        T=t, n_done=len(done), n_total=int(result["settings"]["n_samples"]), count=m,
        running_mean=np.cumsum(vf) / m, running_se=running_error(vf), vf=stats["vf"], vf_se=stats["vf_se"],
        gamma1=stats["gamma1"], gamma1_se=stats["gamma1_se"], static=static,
        gap=stats.get("gap", float("nan")), gap_se=stats.get("gap_se", float("nan")),
        rel_change=stats["vf_rel_change"], rate=float("nan"), eta_s=float("nan"),
        spectral=spectra[f"mean_{label}"][-1], n_spectral=int(spectra[f"samples_{label}"][-1]),
        static_spectral=spectra[f"static_{label}"], k_distances=spectra["distances_per_a"],
        energies=spectra["energies_ev"], k_labels=[str(x) for x in spectra["labels"]],
        label_distances=spectra["label_distances"], near_k=near_k, setup_s=float("nan"), n_imaginary=0)
    history = [{"T": r["T"], "vf": r[label]["vf"], "vf_se": r[label]["vf_se"], "samples": r[label]["samples"],
                "static": static["vf"]} for r in result["temperatures"]]
    return snapshot, history
