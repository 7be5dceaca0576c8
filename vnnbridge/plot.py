"""Drawing a certificate: the input, the box's lower and upper bounds and the slack per input.

2-D and 3-D inputs (images) are drawn as images, anything else as bar charts. The slack of
an input is min(x_i - lb_i, ub_i - x_i) over its faces that are not on the domain boundary
(grey where both faces lie on the boundary). matplotlib is imported here only, with Agg.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vnnbridge.certificate import read_certificate
from vnnbridge.errors import InputError

__all__ = ["draw_batch", "draw_certificate", "save_figure"]


def _image_shape(shape: list[int], n: int) -> tuple[int, ...] | None:
    dims = tuple(d for d in shape if d != 1)
    if int(np.prod(dims or (1,))) != n:
        return None
    if len(dims) == 2:
        return dims
    if len(dims) == 3 and dims[0] in (1, 3, 4):
        return dims
    return None


def _as_image(v: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    img = v.reshape(dims)
    if img.ndim == 3:  # CHW: show the channel mean (bounds of different channels differ)
        img = img.mean(axis=0)
    return img


def draw_certificate(folder: str | Path, output: str | Path) -> Path:
    """Write a figure of the certificate in ``folder`` to ``output`` (PNG, PDF or SVG by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _check_output(output)  # before drawing: a bad name costs nothing
    data = read_certificate(folder)
    x = np.array([float.fromhex(h) for h in data["input"]["hex"]])
    lo = np.array([float.fromhex(h) for h in data["box"]["lower_hex"]])
    hi = np.array([float.fromhex(h) for h in data["box"]["upper_hex"]])
    dlo = np.array([float.fromhex(h) for h in data["domain"]["lower_hex"]])
    dhi = np.array([float.fromhex(h) for h in data["domain"]["upper_hex"]])
    slack = np.minimum(np.where(lo > dlo, x - lo, np.inf), np.where(hi < dhi, hi - x, np.inf))
    slack = np.where(np.isinf(slack), np.nan, slack)
    m = data["metrics"]
    title = (f"{data['status']} ({data['method']}, label {data['label']})\napothem {m['apothem']:.4g}, "
             f"edges min {m['min_edge']:.3g} / avg {m['avg_edge']:.3g} / max {m['max_edge']:.3g}, "
             f"{data['call_count']} calls")
    shape = data["input"].get("shape") or data["network"].get("input_shape") or [x.size]
    dims = _image_shape(list(shape), x.size) or _image_shape(list(data["network"].get("input_shape", [])), x.size)
    panels = [("input x", x, "gray"), ("lower bound", lo, "gray"), ("upper bound", hi, "gray"),
              ("slack min(x-lb, ub-x)", slack, "viridis")]
    if dims is not None:
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.8))
        vmin, vmax = float(min(dlo.min(), x.min())), float(max(dhi.max(), x.max()))
        for ax, (name, v, cmap) in zip(axes, panels):
            cm = matplotlib.colormaps[cmap].with_extremes(bad="lightgrey")
            kw = {"vmin": vmin, "vmax": vmax} if cmap == "gray" else {"vmin": 0.0}
            im = ax.imshow(_as_image(v, dims), cmap=cm, interpolation="nearest", **kw)
            ax.set_title(name, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    else:
        fig, axes = plt.subplots(2, 1, figsize=(max(6.0, min(20.0, 0.25 * x.size)), 6), sharex=True)
        idx = np.arange(x.size)
        axes[0].bar(idx, hi - lo, bottom=lo, color="tab:blue", alpha=0.4, label="certified box")
        axes[0].plot(idx, x, "k.", label="input x")
        axes[0].set_ylabel("value")
        axes[0].legend(fontsize=8)
        axes[1].bar(idx, np.nan_to_num(slack, nan=0.0), color="tab:green")
        axes[1].set_ylabel("slack")
        axes[1].set_xlabel("input index")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, output, dpi=110)


def _check_output(output: str | Path) -> Path:
    """``output`` when matplotlib can write its format there; else a one-line `InputError`."""
    from matplotlib.backend_bases import FigureCanvasBase

    out = Path(output)
    kinds = FigureCanvasBase.get_supported_filetypes()
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in kinds:
        raise InputError(f"cannot draw a .{suffix or '(no suffix)'} file; use one of "
                         f"{', '.join('.' + k for k in sorted(kinds))}", path=str(out))
    if out.is_dir():
        raise InputError("this is a folder; give the image file to write", path=str(out))
    return out


def save_figure(fig: Any, output: str | Path, dpi: int) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; return its path."""
    import matplotlib.pyplot as plt

    try:
        out = _check_output(output)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=dpi)
    except OSError as exc:
        raise InputError(f"cannot write the figure: {exc.strerror or exc}", path=str(output)) from None
    finally:
        plt.close(fig)
    return out


def _box_arrays(data: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """x, box lower/upper and domain lower/upper of a certificate's JSON, exactly (from hex)."""
    def hexes(values: list[str]) -> np.ndarray:
        return np.array([float.fromhex(h) for h in values])

    return (hexes(data["input"]["hex"]), hexes(data["box"]["lower_hex"]), hexes(data["box"]["upper_hex"]),
            hexes(data["domain"]["lower_hex"]), hexes(data["domain"]["upper_hex"]))


def draw_batch(folder: str | Path, output: str | Path, smallest: int = 8) -> Path:
    """A batch at a glance: the apothem histogram per class, and the ``smallest`` certified inputs with their boxes.

    Each of the smallest-apothem inputs is drawn as its image (or values), and below it its box:
    the lower and the upper bound side by side (for non-image inputs, the box as bars and its slack).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vnnbridge.batch.table import RESULTS, read_rows
    from vnnbridge.errors import CertificateError

    root = Path(folder)
    rows = read_rows(root / RESULTS)
    if not rows:
        raise CertificateError("no finished inputs (results.csv is missing or empty)", path=str(root))
    classes: dict[str, list[float]] = {}
    for r in rows:
        cls = r.get("true_label") or r.get("label") or "?"
        values = classes.setdefault(cls, [])
        if r.get("status") == "certified" and r.get("apothem"):
            values.append(float(r["apothem"]))
    names = sorted(classes, key=lambda c: (0, int(c)) if c.lstrip("-").isdigit() else (1, c))
    certified = sorted((r for r in rows if r.get("status") == "certified" and r.get("apothem")),
                       key=lambda r: (float(r["apothem"]), r["id"]))[:max(0, smallest)]
    cols = 5
    hist_rows = -(-len(names) // cols)
    grid_rows = -(-len(certified) // cols) * 2
    fig = plt.figure(figsize=(13, 2.2 * hist_rows + 1.6 * grid_rows + 0.6))
    spec = fig.add_gridspec(hist_rows + grid_rows, cols, height_ratios=[1.3] * hist_rows + [1.0] * grid_rows)
    every = [v for vs in classes.values() for v in vs]
    bins = np.linspace(0.0, max(every) if every else 1.0, 21)
    for k, cls in enumerate(names):
        ax = fig.add_subplot(spec[k // cols, k % cols])
        group = [r for r in rows if (r.get("true_label") or r.get("label") or "?") == cls]
        ax.hist(classes[cls], bins=bins.tolist(), color="tab:blue")
        ax.set_title(f"class {cls}: {len(classes[cls])}/{len(group)} certified", fontsize=9)
        ax.tick_params(labelsize=7)
        if k % cols == 0:
            ax.set_ylabel("inputs", fontsize=8)
        if k // cols == hist_rows - 1:
            ax.set_xlabel("apothem", fontsize=8)
    for k, r in enumerate(certified):
        try:
            data = read_certificate(root / r["id"])
        except CertificateError:
            continue
        x, lo, hi, dlo, dhi = _box_arrays(data)
        slack = np.minimum(np.where(lo > dlo, x - lo, np.inf), np.where(hi < dhi, hi - x, np.inf))
        slack = np.where(np.isinf(slack), np.nan, slack)
        shape = data["input"].get("shape") or data["network"].get("input_shape") or [x.size]
        dims = _image_shape(list(shape), x.size)
        row0 = hist_rows + 2 * (k // cols)
        top, bottom = fig.add_subplot(spec[row0, k % cols]), fig.add_subplot(spec[row0 + 1, k % cols])
        label = f"#{r['id']} label {r.get('label')}" + (f" (true {r['true_label']})" if r.get("true_label") else "")
        top.set_title(f"{label}\napothem {float(r['apothem']):.4g}", fontsize=8)
        if dims is not None:
            top.imshow(_as_image(x, dims), cmap="gray", vmin=float(dlo.min()), vmax=float(dhi.max()),
                       interpolation="nearest")
            gap = np.full((_as_image(x, dims).shape[0], 2), np.nan)
            pair = np.hstack([_as_image(lo, dims), gap, _as_image(hi, dims)])
            cm = matplotlib.colormaps["gray"].with_extremes(bad="white")
            bottom.imshow(pair, cmap=cm, vmin=float(dlo.min()), vmax=float(dhi.max()), interpolation="nearest")
            bottom.set_title("box: lower | upper", fontsize=8)
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
        else:
            idx = np.arange(x.size)
            top.plot(idx, x, "k.", markersize=2)
            top.bar(idx, hi - lo, bottom=lo, color="tab:blue", alpha=0.4)
            bottom.bar(idx, np.nan_to_num(slack, nan=0.0), color="tab:green")
            bottom.set_title("box slack", fontsize=8)
    fig.suptitle(f"{root.name}: {len(rows)} inputs, apothem per class; the {len(certified)} smallest "
                 "certified apothems with their boxes", fontsize=10)
    return save_figure(fig, output, dpi=100)
