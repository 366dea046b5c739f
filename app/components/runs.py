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
        name = RunStore.add_folder(path)
        self.refresh()
        return name

    def add_archive(self, filename: str, data: bytes) -> str:
        """Unpack an uploaded run archive (zip or tar of a run folder) into the runs
        directory, every entry checked first; returns the run's name there."""
        name = RunStore.add_archive(data, filename)
        self.refresh()
        return name

    def show(self, name: str) -> None:
        """Show a run in the live plots. A run of this page's kind: its settings go to the
        controls and Run continues it from disk (nothing is sampled again; more samples or
        another temperature then continue its keyed streams). An `mlepi mc` run: its files
        are shown as they are and, when its structure and models are the page's, its settings
        go to the controls too and Run continues its samples. A run whose models are gone is
        overlaid instead."""
        row = next((r for r in self.listing if r["name"] == name), None)
        if row is None or row.get("unreadable"):
            raise ValueError(f"no readable run {name!r} in the runs directory")
        folder = RunStore.root / name
        record = json.loads((folder / "run.json").read_text())
        query = record.get("query")
        if not query and (folder / "results.json").is_file() and (folder / "spectral.npz").is_file():
            self._show_cli_run(name, folder, record, row)
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

    def _show_cli_run(self, name: str, folder, record: dict, row: dict) -> None:
        """An `mlepi mc` folder in the live plots from its files; continuable from the page
        when its structure is in the gallery and its models are here, unchanged."""
        snapshot, history = snapshot_from_disk(folder)
        query, why = cli_run_query(record)
        query["T"] = f"{snapshot.T:g}"  # the temperature shown
        if not why and not RunStore.continuable(row):
            why = "its models are gone or changed"
        if not why and self.apply_link is not None:
            problems = self.apply_link(query)
            why = "; ".join(problems)
        if not why:
            mc = self.monte_carlo
            mc.continue_from = {"checkpoint": str(folder / record["checkpoint"]), "name": name,
                                "identity": mc._identity(mc.settings()),
                                "spectral_every": int(record["settings"].get("spectral_every", 1))}
        self.monte_carlo.param.update(snapshot=snapshot, history=history)
        self.ctx.message = (f"{name} (from `mlepi mc`) is shown from its files: {snapshot.n_done} samples at "
                            f"{snapshot.T:g} K; " + (f"Run continues it (more samples or another temperature)"
                                                     if not why else f"it cannot be continued here: {why}"))

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
        return pn.Column(pn.Row(chooser, refresh), pn.Row(pick, show, self._download(pick)), pn.Row(folder, add),
                         self._upload(), search, listing, css_classes=["mlepi-runs-panel"])

    def _upload(self):
        """The run archive input: refused in the browser over its size, checked on the server."""
        from app.upload import FileUpload
        from mlepi_core.run_store import MAX_ARCHIVE_BYTES

        upload = FileUpload(label="Upload a run archive (.zip or .tar.gz of a run folder)", accept=".zip,.tar,.tar.gz,.tgz",
                            max_bytes=MAX_ARCHIVE_BYTES, css_classes=["mlepi-runs-upload"],
                            advice=f"over the {MAX_ARCHIVE_BYTES / 2**20:.0f} MiB a run archive may be: "
                                   f"add a larger run by its folder's path")

        def on_upload(event):
            if not event.new:
                return
            try:
                self.ctx.message = f"added {self.add_archive(upload.filename, upload.decode(event.new))} to the runs directory"
            except (ValueError, OSError) as err:
                self.ctx.message = html.escape(str(err))
        upload.param.watch(on_upload, "encoded")
        upload.param.watch(lambda e: e.new and setattr(self.ctx, "message", f"Not sent: {html.escape(e.new)}"),
                           "refused")
        return upload

    def _download(self, pick):
        """The picked run's folder as a zip, to add to another server's runs directory."""
        import io

        from mlepi_core.run_archive import pack

        def archive():
            if RunStore.root is None or not pick.value or not (RunStore.root / pick.value).is_dir():
                return io.BytesIO()
            return io.BytesIO(pack(RunStore.root / pick.value))
        download = pn.widgets.FileDownload(callback=archive, filename="run.zip", label="Download as archive",
                                           button_type="light", css_classes=["mlepi-runs-download"])
        pick.param.watch(lambda e: setattr(download, "filename", f"{e.new}.zip"), "value")
        if pick.value:
            download.filename = f"{pick.value}.zip"
        return download


def cli_run_query(record: dict) -> tuple[dict, str]:
    """The page's link parameters for an `mlepi mc` run's settings, and why it cannot be
    continued in the page ("" when it can)."""
    from app.catalogue import GALLERY, model_code

    settings, models = record.get("settings", {}), record.get("models", {})
    structure = str(record.get("identity", {}).get("structure", ""))
    if structure not in GALLERY.values():
        return {}, f"its structure {structure!r} is not in the gallery (continue it with `mlepi mc --resume`)"
    try:
        query = {"structure": structure, "supercell": str(settings["supercell"]),
                 "forces": model_code(models["forces"]["name"]), "electrons": model_code(models["electrons"]["name"]),
                 "T": f"{float(max(settings['temperatures'])):g}", "samples": str(settings["n_samples"]),
                 "seed": str(settings["seed"]), "antithetic": str(int(settings["antithetic"])),
                 "sampling": settings.get("sampling", "mc"), "path": str(settings.get("path_points", 30))}
    except (KeyError, TypeError, ValueError) as err:
        return {}, f"its record lacks a setting ({err})"
    return query, ""


def snapshot_from_disk(folder) -> tuple:
    """(Snapshot, v_F(T) history) of an `mlepi mc` folder at its last temperature, from its
    files alone (results.json, spectral.npz, the checkpoint): the plots of a live run."""
    import numpy as np

    from app.components.monte_carlo import Snapshot
    from mlepi_core.checkpoints import read_checkpoint
    from mlepi_core.statistics import estimator_units, running_error

    record = json.loads((folder / "run.json").read_text())
    result = json.loads((folder / "results.json").read_text())
    label = record["checkpoint"].removeprefix("checkpoint_").removesuffix(".npz")
    state = read_checkpoint(folder / record["checkpoint"])
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
