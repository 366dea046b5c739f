"""File uploads (a structure, a run archive): a file input that checks the file's size in
the browser, so a file over the limit is refused with a message before a byte is sent (a
websocket message over the server's limit would end the tab's session)."""

from __future__ import annotations

from base64 import b64decode

import param
from panel.custom import JSComponent

from mlepi_core.limits import JOBS, LIMITS

ACCEPT = ".xyz,.extxyz,.cif,.vasp,.poscar,POSCAR,CONTCAR,.json,.traj,.in,.pdb,.xsf"


def too_large_text(max_bytes: int) -> str:
    """The refusal's advice: the limit and the command-line route."""
    return (f"over the {max_bytes / 2**20:.1f} MiB upload limit (mlepi_core/limits.py). "
            f"Use the command line for larger files: {JOBS['load'][2]}")


class FileUpload(JSComponent):
    """A file input for one file (a structure, a run archive). The browser sets ``filename``, then ``encoded``
    (the file, base64); a file over ``max_bytes`` is not sent, and ``refused`` says why
    (the same text again is shown in the widget only)."""

    accept = param.String(default=ACCEPT)
    disabled = param.Boolean(default=False)
    label = param.String(default="Upload a structure")
    max_bytes = param.Integer(default=LIMITS.max_file_bytes, doc="largest file sent to the server (bytes)")
    advice = param.String(default="", doc="the refusal's second half: the limit and the CLI route")
    filename = param.String(default="")
    encoded = param.String(default="", doc="the last file sent, base64")
    refused = param.String(default="", doc="why the browser kept the last file back")

    _esm = """
    export function render({ model, el }) {
      const label = document.createElement("label");
      label.textContent = model.label;
      label.style.display = "block";
      const input = document.createElement("input");
      input.type = "file";
      input.accept = model.accept;
      const note = document.createElement("div");
      note.className = "mlepi-upload-note";
      note.style.color = "#b00020";
      input.addEventListener("change", () => {
        const file = input.files[0];
        if (!file) return;
        if (file.size > model.max_bytes) {
          const text = `${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB, ${model.advice}`;
          note.textContent = text;
          input.value = "";
          model.refused = text;
          return;
        }
        note.textContent = "";
        const reader = new FileReader();
        reader.onload = () => {
          model.filename = file.name;
          model.encoded = String(reader.result).split(",")[1] || "";
          input.value = "";
        };
        reader.readAsDataURL(file);
      });
      model.on("disabled", () => { input.disabled = model.disabled; });
      input.disabled = model.disabled;
      el.append(label, input, note);
    }
    """

    def __init__(self, **params):
        params.setdefault("advice", too_large_text(params.get("max_bytes", LIMITS.max_file_bytes)))
        super().__init__(**params)

    @staticmethod
    def decode(encoded: str) -> bytes:
        return b64decode(encoded)
